// Opens the room's WebSocket on the back end (API_URL from /config.js) and shows the echoes.
(function () {
  const room = document.getElementById("room").textContent;
  const base = (window.API_URL || location.origin).replace(/^http/, "ws");
  const ws = new WebSocket(base + "/ws/echo/" + room + "/");
  const log = document.getElementById("log");
  ws.onmessage = (e) => {
    const li = document.createElement("li");
    li.textContent = e.data;
    log.appendChild(li);
  };
  document.getElementById("send").onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById("text");
    ws.send(input.value);
    input.value = "";
  };
})();
