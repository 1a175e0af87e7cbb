//! Bad input: every case asserts the exact message and its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::errors;

const HEAD: &str = "[stack]\nname = \"t\"\n";

/// Runs `body` after a valid `[stack]` header and expects exactly `want`.
fn expect(body: &str, want: &[&str]) {
    let got = errors(&format!("{HEAD}{body}"));
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "\nfor:\n{body}");
}

#[test]
fn toml_syntax_error_has_its_location() {
    let got = errors("[stack]\nname = \"t\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("grove.toml:2:"), "{got:?}");
    assert!(got[0].contains("invalid TOML"), "{got:?}");
}

#[test]
fn unknown_top_level_key_suggests() {
    expect(
        "[servics.web]\ncommand = \"x\"\n",
        &["grove.toml:3:2: servics: unknown key `servics`"],
    );
}

#[test]
fn unknown_service_key_suggests_the_nearest() {
    let got = errors(&format!("{HEAD}[services.web]\ncomand = \"x\"\n"));
    assert!(
        got.contains(&"grove.toml:4:1: services.web.comand: unknown key `comand`".to_string()),
        "{got:?}"
    );
}

#[test]
fn unknown_key_help_names_the_suggestion() {
    let dir = common::Dir::new(&format!(
        "{HEAD}[services.web]\ncommand = \"x\"\nhelth = {{ http = \"/\" }}\n"
    ));
    let err = grove_config::load(&dir.path(), &Default::default()).unwrap_err();
    let help = err.errors[0].help.clone().unwrap_or_default();
    assert!(help.starts_with("did you mean `health`?"), "{help}");
}

#[test]
fn missing_stack_table() {
    let got = errors("[services.web]\ncommand = \"x\"\n");
    assert_eq!(
        got,
        vec!["grove.toml:1:1: stack: the `[stack]` table is missing"]
    );
}

#[test]
fn missing_and_bad_stack_name() {
    assert_eq!(
        errors("[stack]\n"),
        vec!["grove.toml:1:1: stack.name: the stack needs a name"]
    );
    assert_eq!(
        errors("[stack]\nname = \"my app\"\n"),
        vec!["grove.toml:2:8: stack.name: `my app` is not a valid stack name"]
    );
}

#[test]
fn wrong_type() {
    expect(
        "[services.web]\ncommand = \"x\"\nreplicas = \"two\"\n",
        &["grove.toml:5:12: services.web.replicas: expected an integer, found a string"],
    );
}

#[test]
fn service_without_a_source() {
    expect(
        "[services.web]\nport = 8000\n",
        &["grove.toml:3:11: services.web: a service needs one of `command`, `recipe` or `upstreams`"],
    );
}

#[test]
fn service_with_two_sources() {
    expect(
        "[services.web]\ncommand = \"x\"\nrecipe = \"redis\"\n",
        &["grove.toml:3:11: services.web: a service takes only one of `command` or `recipe`"],
    );
}

#[test]
fn unknown_recipe_lists_valid_ones() {
    expect(
        "[services.db]\nrecipe = \"postgresql\"\n",
        &["grove.toml:4:10: services.db.recipe: unknown recipe `postgresql`"],
    );
}

#[test]
fn recipe_settings_are_checked() {
    expect(
        "[services.db]\nrecipe = \"postgres\"\ndatabases = \"each\"\n",
        &["grove.toml:5:13: services.db.databases: `each` is not valid here"],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\ndatabases = [\"ok_1\", \"no-dash\"]\n",
        &["grove.toml:5:22: services.db.databases[1]: `no-dash` is not a database name grove creates"],
    );
    expect(
        "[services.c]\nrecipe = \"memcached\"\ndatabases = [\"a\"]\n",
        &["grove.toml:5:1: services.c.databases: the `memcached` recipe has no named databases"],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\npersistence = false\n",
        &["grove.toml:5:1: services.db.persistence: `persistence` applies to the redis recipe only"],
    );
    expect(
        "[services.web]\ncommand = \"x\"\ndatabases = \"per-instance\"\n",
        &["grove.toml:5:1: services.web.databases: `databases` applies to recipe services only"],
    );
}

#[test]
fn unknown_dependency_lists_services() {
    let dir = common::Dir::new(&format!(
        "{HEAD}[services.web]\ncommand = \"x\"\ndepends_on = [\"dbb\"]\n[services.db]\nrecipe = \"redis\"\n"
    ));
    let err = grove_config::load(&dir.path(), &Default::default()).unwrap_err();
    assert_eq!(err.errors.len(), 1);
    let e = &err.errors[0];
    assert_eq!((e.line, e.column), (5, 15));
    assert_eq!(e.message, "`dbb` is not a service");
    assert_eq!(
        e.help.as_deref(),
        Some("did you mean `db`? services: web, db")
    );
}

#[test]
fn dependency_cycle_is_printed() {
    expect(
        "[services.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n[services.b]\ncommand = \"y\"\ndepends_on = [\"c\"]\n[services.c]\ncommand = \"z\"\ndepends_on = [\"a\"]\n",
        &["grove.toml:5:15: services.a.depends_on: dependency cycle: a -> b -> c -> a"],
    );
}

#[test]
fn self_dependency_is_a_cycle() {
    expect(
        "[services.a]\ncommand = \"x\"\ndepends_on = [\"a\"]\n",
        &["grove.toml:5:15: services.a.depends_on: dependency cycle: a -> a"],
    );
}

#[test]
fn bad_dependency_condition() {
    expect(
        "[services.a]\ncommand = \"x\"\ndepends_on = { b = \"ready\" }\n[services.b]\ncommand = \"y\"\n",
        &["grove.toml:5:20: services.a.depends_on.b: `ready` is not valid here"],
    );
}

#[test]
fn completed_needs_a_task_and_healthy_a_probe() {
    expect(
        "[services.a]\ncommand = \"x\"\ndepends_on = { b = \"completed\", c = \"healthy\" }\n[services.b]\ncommand = \"y\"\n[services.c]\ncommand = \"z\"\n",
        &[
            "grove.toml:5:16: services.a.depends_on: `b` is a long-running service and never completes",
            "grove.toml:5:33: services.a.depends_on: `c` has no health probe, so it can never be healthy",
        ],
    );
}

#[test]
fn port_clash_between_services() {
    expect(
        "[services.a]\ncommand = \"x\"\nport = 8000\n[services.b]\ncommand = \"y\"\nport = 8000\n",
        &["grove.toml:8:8: services.b.port: port 8000 is already used by services.a"],
    );
}

#[test]
fn port_clash_with_the_edge() {
    expect(
        "[edge]\nlisten = [\"http://127.0.0.1:8080\"]\n[services.a]\ncommand = \"x\"\nport = 8080\n",
        &["grove.toml:7:8: services.a.port: port 8080 is already used by the edge listener http://127.0.0.1:8080"],
    );
}

#[test]
fn port_out_of_range() {
    expect(
        "[services.a]\ncommand = \"x\"\nport = 70000\n",
        &["grove.toml:5:8: services.a.port: 70000 is out of range"],
    );
}

#[test]
fn fixed_port_with_replicas() {
    expect(
        "[services.a]\ncommand = \"x\"\nport = 9000\nreplicas = 2\n",
        &["grove.toml:5:8: services.a.port: fixed port 9000 would be shared by 2 units"],
    );
}

#[test]
fn required_variable_message() {
    expect(
        "[services.a]\ncommand = \"x\"\nenv = { K = \"${API_KEY:?put API_KEY in .env}\" }\n",
        &["grove.toml:5:13: services.a.env.K: required variable API_KEY is not set: put API_KEY in .env"],
    );
}

#[test]
fn bad_duration() {
    expect(
        "[services.a]\ncommand = \"x\"\nstop_grace = \"5 seconds\"\n",
        &["grove.toml:5:14: services.a.stop_grace: `5 seconds` is not a duration"],
    );
}

#[test]
fn bad_size() {
    expect(
        "[services.a]\ncommand = \"x\"\nroute = { max_body = \"10 megs\" }\n",
        &["grove.toml:5:22: services.a.route.max_body: `10 megs` is not a size"],
    );
}

#[test]
fn bad_enums() {
    expect(
        "[services.a]\ncommand = \"x\"\nkind = \"cron\"\nrestart = \"sometimes\"\n",
        &[
            "grove.toml:5:8: services.a.kind: `cron` is not valid here",
            "grove.toml:6:11: services.a.restart: `sometimes` is not valid here",
        ],
    );
}

#[test]
fn bad_stop_signal() {
    expect(
        "[services.a]\ncommand = \"x\"\nstop_signal = \"SIGFOO\"\n",
        &["grove.toml:5:15: services.a.stop_signal: `SIGFOO` is not a stop signal"],
    );
}

#[test]
fn health_needs_exactly_one_check() {
    expect(
        "[services.a]\ncommand = \"x\"\nhealth = { http = \"/\", tcp = true }\n[services.b]\ncommand = \"y\"\nhealth = { interval = \"1s\" }\n",
        &[
            "grove.toml:5:10: services.a.health: a health probe takes only one of `http` or `tcp`",
            "grove.toml:8:10: services.b.health: a health probe needs one of `http`, `tcp` or `exec`",
        ],
    );
}

#[test]
fn bad_listen_url() {
    expect(
        "[edge]\nlisten = [\"tcp://0.0.0.0:80\", \"http://nowhere:80\"]\n",
        &[
            "grove.toml:4:11: edge.listen: `tcp://0.0.0.0:80` must start with http:// or https://",
            "grove.toml:4:31: edge.listen: `http://nowhere:80` is not an IP address and port",
        ],
    );
}

#[test]
fn route_on_a_task() {
    expect(
        "[services.a]\ncommand = \"x\"\nkind = \"task\"\nroute = { prefix = \"/\" }\n",
        &["grove.toml:6:1: services.a.route: a task cannot have a route"],
    );
}

#[test]
fn instance_reference_outside_per_instance_service() {
    expect(
        "[instances.x]\nprefix = \"/x\"\n[services.a]\ncommand = \"run ${instance}\"\n",
        &["grove.toml:6:11: services.a.command: `${instance}` is only known in a service with for_each_instance = true"],
    );
}

#[test]
fn instance_variable_missing_in_one_instance() {
    expect(
        "[instances.x]\ncur = \"A\"\n[instances.y]\nprefix = \"/y\"\n[services.a]\ncommand = \"run ${instance.cur}\"\nfor_each_instance = true\n",
        &["grove.toml:8:11: services.a.command: `${instance.cur}` is not defined by instance `y`"],
    );
}

#[test]
fn reference_to_an_unknown_service() {
    expect(
        "[services.a]\ncommand = \"x\"\nenv = { U = \"${dbx.url}\" }\n[services.db]\nrecipe = \"postgres\"\n",
        &["grove.toml:5:13: services.a.env.U: `${dbx.url}` names no service"],
    );
}

#[test]
fn reference_with_a_bad_attribute() {
    expect(
        "[services.a]\ncommand = \"x\"\nenv = { U = \"${db.uri}\" }\n",
        &["grove.toml:5:13: services.a.env.U: `${db.uri}`: a service reference ends in .url, .host or .port, not .uri"],
    );
}

#[test]
fn unterminated_interpolation() {
    expect(
        "[services.a]\ncommand = \"echo ${HOME\"\n",
        &["grove.toml:4:11: services.a.command: `${` is not closed with `}`"],
    );
}

#[test]
fn per_instance_service_without_instances() {
    expect(
        "[services.a]\ncommand = \"x\"\nfor_each_instance = true\n",
        &["grove.toml:3:11: services.a.for_each_instance: there are no instances to run this service for"],
    );
}

#[test]
fn replicas_zero() {
    expect(
        "[services.a]\ncommand = \"x\"\nreplicas = 0\n",
        &["grove.toml:5:12: services.a.replicas: 0 is out of range"],
    );
}

#[test]
fn acme_needs_email_and_hosts() {
    expect(
        "[edge]\nlisten = [\"https://127.0.0.1:8443\"]\ntls = \"acme\"\n",
        &[
            "grove.toml:5:7: edge.acme_email: tls = \"acme\" needs an account email",
            "grove.toml:5:7: edge.hosts: tls = \"acme\" needs the host names to certify",
        ],
    );
}

#[test]
fn https_listener_with_tls_off() {
    expect(
        "[edge]\nlisten = [\"https://127.0.0.1:8443\"]\ntls = \"off\"\n",
        &["grove.toml:5:7: edge.tls: an https:// listener needs certificates, but tls is off"],
    );
}

#[test]
fn bad_bind_address() {
    expect(
        "[services.a]\ncommand = \"x\"\nbind = \"localhost\"\n",
        &["grove.toml:5:8: services.a.bind: `localhost` is not an IP address"],
    );
}

#[test]
fn missing_env_file() {
    let got = errors(&format!(
        "{HEAD}[services.a]\ncommand = \"x\"\nenv_file = \"nope.env\"\n"
    ));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("grove.toml:5:12: services.a.env_file: cannot read `nope.env`"),
        "{got:?}"
    );
}

#[test]
fn static_prefix_must_be_a_path() {
    expect(
        "[edge]\nstatic = { \"static\" = \"s/\" }\n",
        &["grove.toml:4:12: edge.static.static: the mount prefix `static` must start with `/`"],
    );
}

#[test]
fn forward_to_unknown_service() {
    expect(
        "[edge]\nforward = [{ listen = \"http://127.0.0.1:2002\", service = \"backend\" }]\n",
        &["grove.toml:4:58: edge.forward[0].service: `backend` is not a service"],
    );
}

#[test]
fn two_services_on_the_same_route() {
    expect(
        "[services.a]\ncommand = \"x\"\nroute = { prefix = \"/api\" }\n[services.b]\ncommand = \"y\"\nroute = { prefix = \"/api/\" }\n",
        &["grove.toml:6:11: services.b.route: the route any host /api is already taken by `a`"],
    );
}

#[test]
fn bad_upstream_address() {
    expect(
        "[services.r]\nupstreams = [\"10.0.0.5\"]\n",
        &["grove.toml:4:14: services.r.upstreams: `10.0.0.5` is not an upstream address"],
    );
}

#[test]
fn lone_dollar() {
    expect(
        "[services.a]\ncommand = \"echo $HOME\"\n",
        &["grove.toml:4:11: services.a.command: a `$` must start `${NAME}`; write `$$` for a literal `$`"],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let got = errors(
        "[stack]\nname = \"t\"\nbogus = 1\n[services.a]\ncommand = \"x\"\nport = 0\nkind = \"nope\"\nstop_grace = \"soon\"\ndepends_on = [\"zz\"]\n",
    );
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn hostile_input_never_panics() {
    for text in [
        "",
        "=",
        "[stack",
        "[[services]]\nname = 1",
        "services = 3",
        "[stack]\nname = \"a\"\n[services.a]\ncommand = []",
        "[stack]\nname = \"a\"\n[services.a]\ncommand = \"'\"",
        "[stack]\nname = \"a\"\n[services.a]\ncommand = \"${${${\"",
        "[stack]\nname = \"a\"\n[edge]\nstatic = [1]\nforward = 3",
        "[stack]\nname = \"a\"\nports = \"9-1\"",
        "[stack]\nname = \"a\"\n[environments]\nx = 1",
        "\u{0}\u{feff}",
    ] {
        let _ = errors(text);
    }
}

#[test]
fn log_rotation_settings_are_checked() {
    let got = errors("[stack]\nname = \"t\"\nlog_max_size = \"12\"\nlog_keep = 0\n");
    assert_eq!(
        got,
        vec![
            "grove.toml:3:16: stack.log_max_size: `12` is not a log size",
            "grove.toml:4:12: stack.log_keep: 0 is out of range",
        ]
    );
    assert!(errors("[stack]\nname = \"t\"\nlog_max_size = \"1KB\"\nlog_keep = 100\n").is_empty());
}

#[test]
fn bad_balance_and_edge_limits() {
    expect(
        "[services.a]\ncommand = \"x\"\nroute = { balance = \"random\" }\n",
        &["grove.toml:5:21: services.a.route.balance: `random` is not valid here"],
    );
    expect(
        "[edge.limits]\nclient_header_timeout = \"0s\"\nmax_headers = 2\nmax_body = 5\n",
        &[
            "grove.toml:4:25: edge.limits.client_header_timeout: must be more than 0",
            "grove.toml:5:15: edge.limits.max_headers: must be a whole number from 8 to 1000",
            "grove.toml:6:1: edge.limits.max_body: unknown key `max_body`",
        ],
    );
}

#[test]
fn admin_settings_are_checked() {
    expect(
        "[admin]\nlisten = \"everywhere\"\n",
        &["grove.toml:4:10: admin.listen: `everywhere` is not an address and port"],
    );
    expect(
        "[admin]\nsample_interval = \"10ms\"\n",
        &["grove.toml:4:19: admin.sample_interval: the sample interval must be between 200ms and 1h"],
    );
    expect(
        "[admin]\nwebhook = \"ftp://x\"\n",
        &["grove.toml:4:11: admin.webhook: `ftp://x` is not an http:// or https:// URL"],
    );
    expect(
        "[admin]\nlisen = 9090\n",
        &["grove.toml:4:1: admin.lisen: unknown key `lisen`"],
    );
}

#[test]
fn probe_statuses_are_http_only_and_real_statuses() {
    expect(
        "[services.a]\ncommand = \"x\"\nhealth = { tcp = true, status = [200] }\n",
        &["grove.toml:5:33: services.a.health.status: `status` applies to `http` probes only"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nhealth = { http = \"/\", status = [200, 700] }\n",
        &["grove.toml:5:39: services.a.health.status[1]: 700 is out of range"],
    );
}

#[test]
fn route_hold_is_a_duration() {
    expect(
        "[services.a]\ncommand = \"x\"\nroute = { hold = \"soon\" }\n",
        &["grove.toml:5:18: services.a.route.hold: `soon` is not a duration"],
    );
}

#[test]
fn replace_order_must_be_possible() {
    expect(
        "[services.a]\ncommand = \"x\"\nreplace = \"sometimes\"\n",
        &["grove.toml:5:11: services.a.replace: `sometimes` is not valid here"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nport = 8000\nreplace = \"start-first\"\n",
        &["grove.toml:6:11: services.a.replace: start-first is not possible here: a fixed port cannot be held by two processes at once"],
    );
    expect(
        "[services.db]\nrecipe = \"redis\"\nreplace = \"start-first\"\n",
        &["grove.toml:5:11: services.db.replace: start-first is not possible here: a recipe's server keeps one data folder"],
    );
    expect(
        "[services.m]\ncommand = \"x\"\nkind = \"task\"\nreplace = \"start-first\"\n",
        &["grove.toml:6:11: services.m.replace: start-first is not possible here: a task runs to completion; it is not replaced"],
    );
    // Stop-first is always possible.
    expect(
        "[services.a]\ncommand = \"x\"\nport = 8000\nreplace = \"stop-first\"\n",
        &[],
    );
}

#[test]
fn max_surge_is_a_small_positive_count() {
    expect(
        "[services.a]\ncommand = \"x\"\nmax_surge = 0\n",
        &["grove.toml:5:13: services.a.max_surge: 0 is out of range"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nmax_surge = \"all\"\n",
        &["grove.toml:5:13: services.a.max_surge: expected an integer, found a string"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nreplicas = 4\nmax_surge = 2\n",
        &[],
    );
}

#[test]
fn a_postgres_beyond_loopback_names_its_clients() {
    expect(
        "[services.db]\nrecipe = \"postgres\"\nbind = \"0.0.0.0\"\n",
        &["grove.toml:5:8: services.db.bind: a postgres reachable beyond loopback needs `allow`: the networks whose clients may log in"],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\nbind = \"0.0.0.0\"\nallow = [\"10.77.0.0/24\", \"10.77.1.9\"]\n",
        &[],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\nallow = [\"10.77.0.0/40\"]\n",
        &["grove.toml:5:10: services.db.allow[0]: `10.77.0.0/40` is not a network"],
    );
    expect(
        "[services.cache]\nrecipe = \"redis\"\nallow = [\"10.77.0.0/24\"]\n",
        &["grove.toml:5:1: services.cache.allow: `allow` applies to the postgres recipe only"],
    );
}

#[test]
fn recipe_tls_is_for_postgres_redis_and_rabbitmq_only() {
    expect(
        "[services.c]\nrecipe = \"memcached\"\ntls = true\n",
        &["grove.toml:5:1: services.c.tls: `tls` applies to the postgres, redis and rabbitmq recipes only"],
    );
    expect("[services.c]\nrecipe = \"redis\"\ntls = true\n", &[]);
    expect("[services.db]\nrecipe = \"postgres\"\ntls = true\n", &[]);
    // The names clients on other machines dial, for the certificate.
    expect(
        "[services.db]\nrecipe = \"postgres\"\ntls = { names = [\"db.internal\"] }\n",
        &[],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\ntls = { names = [\"db internal\"] }\n",
        &["grove.toml:5:18: services.db.tls.names: `db internal` is not a host name"],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\ntls = { name = [\"db.internal\"] }\n",
        &["grove.toml:5:9: services.db.tls.name: unknown key `name`"],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\ntls = \"yes\"\n",
        &["grove.toml:5:7: services.db.tls: expected true, false or a table such as { names = [\"db.internal\"] }, found a string"],
    );
}

#[test]
fn a_unit_runs_as_a_user_that_exists_and_recipes_keep_their_own() {
    expect(
        "[services.a]\ncommand = \"x\"\nuser = \"no-such-user-here\"\n",
        &["grove.toml:5:8: services.a.user: there is no user `no-such-user-here` on this machine"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nuser = \"nobody\"\ngroup = \"no-such-group-here\"\n",
        &["grove.toml:6:9: services.a.group: there is no group `no-such-group-here` on this machine"],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\nuser = \"nobody\"\n",
        &["grove.toml:5:1: services.db.user: `user` applies to services that run a command"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\numask = \"9\"\n",
        &["grove.toml:5:9: services.a.umask: `9` is not a file mode mask"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nuser = \"nobody\"\ngroup = \"nogroup\"\numask = \"0027\"\n",
        &[],
    );
}

#[test]
fn limits_are_checked_where_written() {
    expect(
        "[services.a]\ncommand = \"x\"\nlimits = { memory = \"1MB\" }\n",
        &["grove.toml:5:21: services.a.limits.memory: `1MB` is too little memory to run anything"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nlimits = { memory = \"lots\", cpu = 0, pidz = 3 }\n",
        &[
            "grove.toml:5:21: services.a.limits.memory: `lots` is not a size",
            "grove.toml:5:35: services.a.limits.cpu: 0 CPUs is out of range",
            "grove.toml:5:38: services.a.limits.pidz: unknown key `pidz`",
        ],
    );
    expect(
        "[services.db]\nrecipe = \"redis\"\nlimits = { memory = \"64MB\" }\n",
        &["grove.toml:5:1: services.db.limits: `limits` applies to services that run a command"],
    );
    expect(
        "[services.a]\ncommand = \"x\"\nlimits = { memory = \"512MB\", cpu = 1.5, pids = 200, nofile = 65536 }\n",
        &[],
    );
}

#[test]
fn a_job_has_a_schedule_that_parses() {
    expect(
        "[services.j]\ncommand = \"x\"\nkind = \"job\"\nschedule = \"61 * * * *\"\n",
        &["grove.toml:6:12: services.j.schedule: minute 61 is out of range (0-59)"],
    );
    expect(
        "[services.j]\ncommand = \"x\"\nkind = \"job\"\n",
        &["grove.toml:5:8: services.j.schedule: a job needs a `schedule`"],
    );
    expect(
        "[services.j]\ncommand = \"x\"\nschedule = \"@daily\"\n",
        &["grove.toml:5:1: services.j.schedule: `schedule` applies to kind = \"job\""],
    );
    expect(
        "[services.j]\ncommand = \"x\"\nkind = \"job\"\nschedule = \"@daily\"\ntimezone = \"Mars/Olympus\"\n",
        &["grove.toml:7:12: services.j.timezone: `Mars/Olympus` is not a time zone this machine knows"],
    );
    expect(
        "[services.j]\ncommand = \"x\"\nkind = \"job\"\nschedule = \"@daily\"\n\n[services.w]\ncommand = \"w\"\ndepends_on = [\"j\"]\n",
        &["grove.toml:10:15: services.w.depends_on: `j` is a job: it runs on its schedule, so nothing can wait for it"],
    );
    expect(
        "[services.j]\ncommand = \"x\"\nkind = \"job\"\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"\nconcurrency = \"replace\"\ntimeout = \"10m\"\n",
        &[],
    );
}

#[test]
fn a_recipe_backup_has_a_schedule_and_a_recipe_grove_backs_up() {
    expect(
        "[services.db]\nrecipe = \"postgres\"\nbackup = { keep = 3 }\n",
        &["grove.toml:5:10: services.db.backup: a backup needs a `schedule`"],
    );
    expect(
        "[services.mc]\nrecipe = \"memcached\"\nbackup = { schedule = \"@daily\" }\n",
        &["grove.toml:5:1: services.mc.backup: grove does not back up the memcached recipe yet"],
    );
    expect(
        "[services.mq]\nrecipe = \"rabbitmq\"\nbackup = { schedule = \"@daily\" }\n",
        &[],
    );
    expect(
        "[services.db]\nrecipe = \"postgres\"\nbackup = { schedule = \"0 3 * * *\", keep = 7, dir = \"/var/backups/grove\" }\n",
        &[],
    );
}

#[test]
fn header_rules_redirects_and_the_canonical_host_are_checked_where_written() {
    let svc = |route: &str| format!("[services.web]\ncommand = \"x\"\nroute = {route}\n");
    expect(
        &svc("{ headers = { set = { X-Id = \"{request_id}\" }, add = { Link = \"a\" }, remove = [\"Server\"] } }"),
        &[],
    );
    expect(
        &svc("{ headers = { set = { X-Id = \"{reqest_id}\" } } }"),
        &["grove.toml:5:38: services.web.route.headers.set.X-Id: `{reqest_id}` is not a placeholder: {request_id}, {host}, {path}, {query}, {uri}, {scheme}, {client}, {method} are"],
    );
    expect(
        &svc("{ request_headers = { remove = [\"Content-Length\"] } }"),
        &["grove.toml:5:41: services.web.route.request_headers.remove: `Content-Length` is the edge's to manage: a rule cannot change it"],
    );
    expect(
        &svc("{ headers = { set = { \"Bad Name\" = \"x\" } } }"),
        &["grove.toml:5:31: services.web.route.headers.set.\"Bad Name\": `Bad Name` is not a header name"],
    );
    expect(
        &svc("{ headers = { replace = {} } }"),
        &["grove.toml:5:23: services.web.route.headers.replace: unknown key `replace`"],
    );
    let edge = |keys: &str| {
        format!("[edge]\nlisten = []\nhosts = [\"example.org\", \"www.example.org\"]\n{keys}\n")
    };
    expect(
        &edge("canonical_host = \"example.org\"\nredirects = { \"/old\" = \"https://new.example.org{uri}\", \"blog.example.org/\" = { to = \"/blog{path}\", status = 308 } }"),
        &[],
    );
    expect(
        &edge("canonical_host = \"example.com\""),
        &["grove.toml:6:18: edge.canonical_host: `example.com` is not one of `hosts`"],
    );
    expect(
        &edge("redirects = { \"/old\" = { to = \"/new\", status = 200 } }"),
        &["grove.toml:6:48: edge.redirects.\"/old\".status: 200 is not a redirect status"],
    );
    expect(
        &edge("redirects = { \"old\" = \"/new\" }"),
        &["grove.toml:6:15: edge.redirects.old: `old` names no path: write `/old` or `old.example.org/`"],
    );
    expect(
        &edge("redirects = { \"/old\" = { status = 301 } }"),
        &["grove.toml:6:24: edge.redirects.\"/old\": a redirect needs `to`"],
    );
}

#[test]
fn a_rate_limit_is_checked_where_written() {
    let svc = |route: &str| format!("[services.web]\ncommand = \"x\"\nroute = {route}\n");
    expect(
        &svc("{ rate_limit = { requests = 100, per = \"1m\", burst = 20, by = \"header:X-Api-Key\" } }"),
        &[],
    );
    expect(
        &svc("{ rate_limit = { per = \"1m\" } }"),
        &["grove.toml:5:24: services.web.route.rate_limit: a rate limit needs `requests`"],
    );
    expect(
        &svc("{ rate_limit = { requests = 10, by = \"ip\" } }"),
        &["grove.toml:5:46: services.web.route.rate_limit.by: `ip` is not what a rate limit can count by"],
    );
    expect(
        &svc("{ rate_limit = { requests = 0 } }"),
        &["grove.toml:5:37: services.web.route.rate_limit.requests: 0 is out of range"],
    );
}

#[test]
fn compression_is_checked_where_written() {
    let svc = |route: &str| format!("[services.web]\ncommand = \"x\"\nroute = {route}\n");
    for ok in [
        "{ compress = true }",
        "{ compress = false }",
        "{ compress = [\"br\", \"gzip\"] }",
        "{ compress = { encodings = [\"zstd\"], min_length = \"1KB\" } }",
        "{ compress = { min_length = 0 } }",
    ] {
        expect(&svc(ok), &[]);
    }
    expect(
        &svc("{ compress = [\"gzip\", \"deflate\"] }"),
        &["grove.toml:5:31: services.web.route.compress: `deflate` is not a coding grove compresses with"],
    );
    expect(
        &svc("{ compress = [\"gzip\", \"gzip\"] }"),
        &["grove.toml:5:31: services.web.route.compress: `gzip` is named twice"],
    );
    expect(
        &svc("{ compress = [] }"),
        &["grove.toml:5:22: services.web.route.compress: no coding to compress with"],
    );
    expect(
        &svc("{ compress = \"gzip\" }"),
        &["grove.toml:5:22: services.web.route.compress: not a compression setting"],
    );
    expect(
        &svc("{ compress = { min_length = \"big\" } }"),
        &["grove.toml:5:37: services.web.route.compress.min_length: `big` is not a size"],
    );
    expect(
        "[edge]\nlisten = []\ncompress = { level = 9 }\n",
        &["grove.toml:5:14: edge.compress.level: unknown key `level`"],
    );
}

#[test]
fn a_split_and_a_mirror_name_services_they_can_send_to() {
    let stack = |route: &str| {
        format!(
            "[services.web]\ncommand = \"x ${{PORT}}\"\nroute = {route}\n\n[services.canary]\ncommand = \"x ${{PORT}}\"\nport = \"auto\"\n\n[services.migrate]\ncommand = \"true\"\nkind = \"task\"\n"
        )
    };
    expect(
        &stack("{ targets = { web = 90, canary = 10 }, sticky = true, mirror = { service = \"canary\", fraction = 0.25 } }"),
        &[],
    );
    expect(
        &stack("{ targets = { web = 90, canery = 10 } }"),
        &["grove.toml:5:33: services.web.route.targets.canery: `canery` is not a service"],
    );
    expect(
        &stack("{ targets = { web = 1, migrate = 1 } }"),
        &["grove.toml:5:32: services.web.route.targets.migrate: `migrate` has no port to send requests to (a long-running command with a `port`, or `upstreams`)"],
    );
    expect(
        &stack("{ targets = { web = 0, canary = 0 } }"),
        &["grove.toml:5:21: services.web.route.targets: a split needs a target with a weight above 0"],
    );
    expect(
        &stack("{ targets = { web = 2000 } }"),
        &["grove.toml:5:29: services.web.route.targets.web: 2000 is out of range"],
    );
    expect(
        &stack("{ sticky = true }"),
        &["grove.toml:5:20: services.web.route.sticky: `sticky` keeps a client on one of the route's `targets`, and it has none"],
    );
    expect(
        &stack("{ mirror = { service = \"canary\", fraction = 2.0 } }"),
        &["grove.toml:5:53: services.web.route.mirror.fraction: 2 is out of range"],
    );
    expect(
        &stack("{ mirror = { fraction = 0.5 } }"),
        &["grove.toml:5:20: services.web.route.mirror: a mirror needs the `service` that gets the copies"],
    );
}

#[test]
fn an_error_page_is_for_an_error_status() {
    expect(
        "[edge]\nlisten = []\nerror_pages = { 200 = \"ok.html\" }\n",
        &["grove.toml:5:17: edge.error_pages.\"200\": `200` is not an error status"],
    );
}

#[test]
fn forward_auth_needs_a_url_and_is_not_basic_too() {
    let svc = |route: &str| format!("[services.web]\ncommand = \"x\"\nroute = {route}\n");
    expect(
        &svc("{ auth = { forward = { url = \"http://127.0.0.1:9000/check\", copy_headers = [\"X-User\"] } } }"),
        &[],
    );
    expect(
        &svc("{ auth = { forward = { copy_headers = [] } } }"),
        &["grove.toml:5:30: services.web.route.auth.forward: `forward` needs `url`"],
    );
    expect(
        &svc("{ auth = { forward = { url = \"ftp://x\" } } }"),
        &["grove.toml:5:38: services.web.route.auth.forward.url: `ftp://x` is not an http:// or https:// URL"],
    );
    expect(
        &svc("{ auth = { basic = { users_file = \"h\" }, forward = { url = \"http://x/\" } } }"),
        &["grove.toml:5:50: services.web.route.auth: `auth` is `basic` or `forward`, not both"],
    );
}

#[test]
fn edge_defaults_for_auth_and_body_sizes_are_checked_where_written() {
    expect(
        "[edge]\nmax_body = \"lots\"\nbuffer_body = 5\nauth = true\n",
        &[
            "grove.toml:4:12: edge.max_body: `lots` is not a size",
            "grove.toml:5:15: edge.buffer_body: expected a string, found an integer",
            "grove.toml:6:8: edge.auth: expected a table, found a boolean",
        ],
    );
    // At [edge], forward auth's URL may name services only (it is every route's).
    expect(
        "[edge]\nauth = { forward = { url = \"http://127.0.0.1:${PORT}/check\" } }\n\n[services.a]\ncommand = \"x\"\nport = \"auto\"\nroute = { prefix = \"/\" }\n",
        &["grove.toml:4:28: edge.auth.forward.url: at [edge], a URL may refer to services only (`${auth.url}/check`)"],
    );
    expect(
        "[edge]\nauth = { forward = { url = \"${auht.url}/check\" } }\n\n[services.auth]\ncommand = \"x\"\nport = \"auto\"\n",
        &["grove.toml:4:28: edge.auth.forward.url: `${auht.url}` names no service"],
    );
    // A route's `auth = true` is not an opt-in: only `false` (opting out) or a table.
    expect(
        "[services.a]\ncommand = \"x\"\nport = \"auto\"\nroute = { auth = true }\n",
        &["grove.toml:6:18: services.a.route.auth: expected a table, found a boolean"],
    );
}
