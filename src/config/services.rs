//! `[services.NAME]` tables: several apps run by one devserve, each a [`Config`] of its own.
//!
//! Contract:
//! - A service's table holds the same keys as the top level (the same settings type, parsed by
//!   the same merge), plus its own three: `route`, `strip-prefix` and `depends-on`. Every
//!   top-level key is the default of every service; a key in the service's table replaces it
//!   (`env` merges per variable, the service's winning), and the command line wins over both.
//! - devserve-wide keys ([`DEVSERVE_WIDE`]: one front door, one watcher, one output) are set at
//!   the top level only; in a service's table they are an error. So is a top-level `command` beside
//!   services, and a COMMAND on the command line.
//! - A service has a `command`, a `build`, or both; a `build` alone is a watch task (run on its
//!   changes, nothing served).
//! - `route` (a path prefix, `/api`) needs `proxy`; no two services have the same route; a
//!   service with a route has no `listen`. `strip-prefix` (default false: the app sees the path as
//!   the browser sent it, which is what an app mounted at `/api` expects) removes the prefix.
//! - `browser-reload`: the top-level key, per service. Unset, a routed service's swaps reload
//!   the browsers' pages and an unrouted one's do not.
//! - `command` and `listen` are a service's own: at the top level beside services they are an
//!   error. `watch = []` in a service's table means changes never restart it (a dev server with
//!   its own watcher and HMR: Vite, Next).
//! - `depends-on` names other services; a name that is not a service, or a cycle, is an error at
//!   the key. Services are listed in the order they start: a service after those it depends on,
//!   otherwise in file order.
//! - NAME is a DNS label in lowercase (`a-z`, `0-9`, `-`): a routed service is also reachable as
//!   `http://NAME.localhost:PORT/`.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::{Config, FileTable, Loader, Part, Problem};

/// The keys of a service's table that the top level does not have.
pub const SERVICE_KEYS: &[&str] = &["route", "strip-prefix", "depends-on"];

/// Keys that are devserve's as a whole, never a service's.
pub const DEVSERVE_WIDE: &[&str] = &[
    "proxy",
    "accept",
    "max-connections",
    "hold-timeout",
    "allowed-hosts",
    "open",
    "upstream",
    "upstream-timeout",
    "pidfile",
    "clear",
    "probe",
    "probe-timeout",
    "log-format",
    "poll",
    "debounce",
    "build-jobs",
];

/// Keys that are one service's own: at the top level beside services they are an error, never
/// every service's default (two services cannot run one command or listen on one address).
const NOT_INHERITED: &[&str] = &["command", "listen"];

/// One service, merged and checked.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Its table's name: `api` for `[services.api]`.
    pub name: String,
    /// Its settings: the top level's with its own over them.
    pub config: Config,
    /// Its path prefix on the front door (`/api`, `/`), if it is routed.
    pub route: Option<String>,
    /// Whether the route's prefix is removed from the path the app sees.
    pub strip_prefix: bool,
    /// The services started before it, in the order given.
    pub depends_on: Vec<String>,
    /// Whether its swaps reload the browsers' pages.
    pub reload_browser: bool,
    /// Whether changes restart it: false for `watch = []` (a dev server with its own watcher).
    pub watches: bool,
}

/// What one table says besides the shared settings.
struct Own {
    name: String,
    span: Range<usize>,
    route: Option<String>,
    strip_prefix: bool,
    depends_on: Vec<(String, Range<usize>)>,
}

/// Every service of `file`, in starting order; the problems go to `problems`.
pub(super) fn merge(
    loader: &Loader,
    file: &FileTable,
    top: &Config,
    problems: &mut Vec<Problem>,
) -> Vec<ServiceConfig> {
    if loader.given("command") {
        problems.push(Problem::plain(
            "a COMMAND on the command line beside [services.NAME] tables in the file: give each \
             service's command in its table",
        ));
        return Vec::new();
    }
    for key in NOT_INHERITED {
        if let Some(value) = file.entries.get(*key) {
            problems.push(file.locate_key(
                &value.span(),
                format!(
                    "`{key}` at the top level beside [services.NAME] tables: move it into a service's table"
                ),
            ));
        }
    }
    if top.accept.is_some() {
        let message =
            "`accept` starts one program per connection for one app: not with [services.NAME] tables";
        problems.push(match file.entries.get("accept") {
            Some(value) => file.locate_key(&value.span(), message.into()),
            None => Problem::plain(message),
        });
    }
    let mut tables: Vec<(&String, &Spanned<super::Entries>)> = file.services.iter().collect();
    tables.sort_by_key(|(_, table)| table.span().start);
    let mut merged: Vec<(Own, ServiceConfig)> = Vec::new();
    for (name, table) in tables {
        let own_entries = table.get_ref();
        let mut own = Own {
            name: name.clone(),
            span: table.span(),
            route: None,
            strip_prefix: false,
            depends_on: Vec::new(),
        };
        if let Err(why) = check_name(name) {
            problems.push(file.locate(&table.span(), format!("[services.{name}]: {why}")));
        }
        let mut entries = Vec::new();
        for (key, value) in &file.entries {
            // `env` merges per variable: the top level's first, the service's after it.
            // A service that holds sockets is not behind the front door: the top level's `proxy`
            // is not its (they cannot go together in one settings type).
            let held = key == "proxy" && own_entries.contains_key("listen");
            if !held
                && !NOT_INHERITED.contains(&key.as_str())
                && (key == "env" || !own_entries.contains_key(key))
            {
                entries.push((key, value));
            }
        }
        for (key, value) in own_entries {
            let at = |message: String| file.locate(&value.span(), format!("[services.{name}] {message}"));
            if DEVSERVE_WIDE.contains(&key.as_str()) {
                problems.push(file.locate_key(
                    &value.span(),
                    format!(
                        "`{key}` is devserve-wide: set it at the top of the file, not in [services.{name}]"
                    ),
                ));
                continue;
            }
            match key.as_str() {
                "route" => match value.get_ref().as_str() {
                    Some(route) if route.starts_with('/') && !route.contains(['?', '#', ' ']) => {
                        own.route = Some(normal_route(route));
                    }
                    _ => problems.push(at("route: expected a path prefix such as \"/api\" or \"/\"".into())),
                },
                "strip-prefix" => match value.get_ref().as_bool() {
                    Some(strip) => own.strip_prefix = strip,
                    None => problems.push(at("strip-prefix: expected true or false".into())),
                },
                "depends-on" => match super::strings(value.get_ref()) {
                    Some(names) => own.depends_on = names.into_iter().map(|n| (n, value.span())).collect(),
                    None => problems.push(at("depends-on: expected an array of service names".into())),
                },
                // The shared settings, `env` after the top level's so that its variables win.
                _ => entries.push((key, value)),
            }
        }
        let Some(config) = loader.merge_entries(Some(file), &entries, Part::Service, problems) else {
            continue;
        };
        let explicit_reload = own_entries.contains_key("browser-reload")
            || file.entries.contains_key("browser-reload")
            || loader.given("no_browser_reload");
        let reload_browser = if explicit_reload { !config.no_browser_reload } else { own.route.is_some() };
        let watches =
            !own_entries.get("watch").is_some_and(|w| w.get_ref().as_array().is_some_and(Vec::is_empty));
        let service = ServiceConfig {
            name: name.clone(),
            route: own.route.clone(),
            strip_prefix: own.strip_prefix,
            depends_on: own.depends_on.iter().map(|(n, _)| n.clone()).collect(),
            reload_browser,
            watches,
            config,
        };
        check_service(file, top, &own, &service, own_entries, problems);
        merged.push((own, service));
    }
    check_routes(file, &merged, problems);
    match start_order(&merged) {
        Ok(order) => {
            let mut slots: Vec<Option<ServiceConfig>> = merged.into_iter().map(|(_, s)| Some(s)).collect();
            order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect()
        }
        Err((at, message)) => {
            problems.push(file.locate(&at, message));
            Vec::new()
        }
    }
}

/// The rules about one service that its settings alone cannot check.
fn check_service(
    file: &FileTable,
    top: &Config,
    own: &Own,
    service: &ServiceConfig,
    own_entries: &super::Entries,
    problems: &mut Vec<Problem>,
) {
    let name = &own.name;
    let key_at = |key: &str| own_entries.get(key).map_or(own.span.clone(), Spanned::span);
    if service.config.command.is_empty() && service.config.build.is_none() {
        problems.push(file.locate(
            &own.span,
            format!("[services.{name}] has neither `command` nor `build`: give one (a build alone is a watch task)"),
        ));
    }
    if let Some(route) = &own.route {
        let why = match &top.proxy {
            None => Some("needs `proxy` at the top of the file: routes are paths on the front door"),
            Some(proxy) if proxy.raw_tcp => Some("a tcp: front door copies bytes and has no paths to route"),
            Some(_) if !service.config.listen.is_empty() => {
                Some("a service has a route or `listen`, not both (drop one)")
            }
            Some(_) if service.config.command.is_empty() => Some("a watch task (no command) serves nothing"),
            Some(_) => None,
        };
        if let Some(why) = why {
            problems
                .push(file.locate(&key_at("route"), format!("[services.{name}] route = \"{route}\": {why}")));
        }
    }
    for (dependency, span) in &own.depends_on {
        if !file.services.contains_key(dependency) {
            problems.push(
                file.locate(
                    span,
                    format!("[services.{name}] depends-on: no service is named `{dependency}`"),
                ),
            );
        }
    }
}

/// No route twice.
fn check_routes(file: &FileTable, merged: &[(Own, ServiceConfig)], problems: &mut Vec<Problem>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (own, _) in merged {
        let Some(route) = &own.route else { continue };
        if let Some(first) = seen.insert(route, &own.name) {
            let span = file.services.get(&own.name).and_then(|t| t.get_ref().get("route")).map(Spanned::span);
            problems.push(file.locate(
                &span.unwrap_or(own.span.clone()),
                format!(
                    "[services.{}] route \"{route}\" is also [services.{first}]'s: each route once",
                    own.name
                ),
            ));
        }
    }
}

/// The services' indexes in starting order (each after its dependencies, otherwise in file
/// order), or the first cycle: where to blame and the message.
fn start_order(merged: &[(Own, ServiceConfig)]) -> Result<Vec<usize>, (Range<usize>, String)> {
    let index = |name: &str| merged.iter().position(|(own, _)| own.name == name);
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        at: usize,
        merged: &[(Own, ServiceConfig)],
        index: &dyn Fn(&str) -> Option<usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), (Range<usize>, String)> {
        match marks.get(at).copied() {
            Some(Mark::Done) | None => return Ok(()),
            Some(Mark::Visiting) => {
                let from = path.iter().position(|&i| i == at).unwrap_or(0);
                let mut names: Vec<&str> = path[from..].iter().map(|&i| merged[i].0.name.as_str()).collect();
                names.push(&merged[at].0.name);
                let (own, _) = &merged[path[from]];
                let span = own.depends_on.first().map_or(own.span.clone(), |(_, span)| span.clone());
                return Err((span, format!("depends-on: a cycle, {}", names.join(" → "))));
            }
            Some(Mark::New) => {}
        }
        marks[at] = Mark::Visiting;
        path.push(at);
        for (dependency, _) in &merged[at].0.depends_on {
            if let Some(next) = index(dependency) {
                visit(next, merged, index, marks, path, order)?;
            }
        }
        path.pop();
        marks[at] = Mark::Done;
        order.push(at);
        Ok(())
    }
    let mut marks = vec![Mark::New; merged.len()];
    let mut order = Vec::with_capacity(merged.len());
    for at in 0..merged.len() {
        visit(at, merged, &index, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// A service's name is a DNS label in lowercase (it is also `NAME.localhost`).
fn check_name(name: &str) -> Result<(), &'static str> {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if fine { Ok(()) } else { Err("a service's name is a host name label: a-z, 0-9 and -, at most 63") }
}

/// `/api/` and `/api` are one route; `/` stays `/`.
fn normal_route(route: &str) -> String {
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() }
}
