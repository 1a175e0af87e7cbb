// Drives grove's dashboard in Debian's Chromium: loads it with the token, sees the units and
// a chart, presses "restart" on a unit, waits for the event, saves a screenshot.
// Usage: node dashboard.mjs URL UNIT SCREENSHOT.png   (prints a JSON report)
import { chromium } from "playwright-core";

const [url, unit, shot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const report = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load", timeout: 15000 });
  report.url = page.url();
  const row = page.locator(`#units tbody tr[data-unit="${unit}"]`);
  await row.waitFor({ timeout: 15000 });
  report.units = await page.locator("#units tbody tr").evaluateAll((rows) =>
    rows.map((r) => r.dataset.unit));
  report.state = (await row.locator(".pill").textContent()).trim();
  report.pidBefore = (await row.locator("td.pid").textContent()).trim();
  await page.locator("#chart-cpu polyline").waitFor({ timeout: 15000 });
  report.chartPoints = Number(await page.locator("#chart-cpu").getAttribute("data-points"));
  await row.locator("button.act-restart").click();
  await page.locator(`#events li[data-kind="started"]`, { hasText: unit }).first()
    .waitFor({ timeout: 15000 });
  // A routed unit's restart is start-first: the answer comes once the new unit is ready.
  await page.waitForFunction(() => document.body.dataset.lastAction, null, { timeout: 30000 });
  report.lastAction = await page.evaluate(() => document.body.dataset.lastAction);
  await page.waitForFunction(
    ([u, before]) => {
      const cell = document.querySelector(`#units tbody tr[data-unit="${u}"] td.pid`);
      return cell && cell.textContent.trim() !== before && cell.textContent.trim() !== "-";
    },
    [unit, report.pidBefore],
    { timeout: 15000 },
  );
  report.pidAfter = (await row.locator("td.pid").textContent()).trim();
  report.logLines = (await page.locator("#log").textContent()).split("\n").filter(Boolean).length;
  await page.screenshot({ path: shot, fullPage: true });
  report.errors = errors;
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
