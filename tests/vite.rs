//! A real Vite dev server as a service beside an API, behind one front door: it is supervised and
//! routed, never swapped (`watch = []`), its pages get no devserve script (`browser-reload =
//! false`), and its HMR WebSocket stays connected across the API's swaps and carries Vite's own
//! reload when a file of the page changes.
//!
//! Needs Node (20.19 or later, what Vite 8 asks for) and npm, which installs Vite 8 into a scratch
//! project. Without Node, or when npm cannot install Vite (no network), the test prints `SKIP:` and
//! why, and passes: the same behaviour is tested without Node by `tests/services.rs` with a
//! stand-in server.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Why Vite cannot run here, if it cannot.
fn node_missing() -> Option<String> {
    let version = match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => return Some("node is not installed".into()),
    };
    let numbers: Vec<u32> =
        version.trim_start_matches('v').split('.').take(2).filter_map(|n| n.parse().ok()).collect();
    match numbers.as_slice() {
        [major, minor] if (*major, *minor) >= (20, 19) => None,
        _ => Some(format!("node {version} is older than Vite 8 needs (20.19)")),
    }
}

/// Installs Vite 8 into `dir`; why not, if it could not.
fn install_vite(dir: &Path) -> Result<(), String> {
    write(
        &dir.join("package.json"),
        "{\"name\": \"vite-service\", \"private\": true, \"type\": \"module\"}\n",
    );
    let done =
        try_run(Command::new("npm").current_dir(dir).args(["install", "--no-audit", "--no-fund", "vite@8"]))
            .map_err(|e| format!("npm cannot run: {e}"))?;
    if done.code() != 0 {
        return Err(format!(
            "npm could not install vite@8: {}",
            done.stderr.lines().last().unwrap_or_default()
        ));
    }
    Ok(())
}

#[test]
fn a_real_vite_is_supervised_and_routed_and_keeps_its_hmr_socket() {
    let dir = temp_dir("vite-service");
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).expect("web");
    let skip = node_missing().map(Err).unwrap_or_else(|| install_vite(&web));
    if let Err(why) = skip {
        eprintln!("SKIP: a_real_vite_is_supervised_and_routed_and_keeps_its_hmr_socket: {why}");
        println!("SKIP: {why}");
        return;
    }
    write(
        &web.join("index.html"),
        "<!doctype html><html><head><title>vite</title></head><body><div id=\"app\"></div>\
         <script type=\"module\" src=\"/main.js\"></script></body></html>\n",
    );
    write(&web.join("main.js"), "document.getElementById('app').textContent = 'v1';\n");
    std::fs::create_dir_all(dir.path().join("api")).expect("api");
    write(&dir.path().join("api/VERSION"), "api-1");
    let config = format!(
        "proxy = \"127.0.0.1:0\"\nlog-format = \"json\"\n\n\
         [services.api]\nwatch = [\"api\"]\ncommand = [\"python3\", \"{}\"]\nroute = \"/api\"\nstrip-prefix = true\n\
         [services.api.env]\nFIXTURE_BIND_PORT_ENV = \"1\"\nFIXTURE_VERSION_FILE = \"api/VERSION\"\n\n\
         [services.web]\ncommand = [\"sh\", \"-c\", \"cd web && exec node_modules/.bin/vite --port {{port}} --strictPort --host 127.0.0.1\"]\n\
         route = \"/\"\nwatch = []\nbrowser-reload = false\ndepends-on = [\"api\"]\n",
        python_fixture().display()
    );
    write(&dir.path().join("devserve.toml"), &config);
    let mut devserve = Devserve::start(dir.path(), &[], &[]);
    let addr = devserve.proxy_addr();
    devserve.wait_event("generation_ready", |e| e["service"] == "web");
    let (head, page) = http_get_any(&addr, "/").expect("Vite's page");
    assert!(head.contains("200"), "{head}");
    assert!(page.contains("/@vite/client"), "Vite served its page: {page}");
    assert!(!page.contains("__devserve"), "no devserve script in Vite's page: {page}");
    // Vite's client names the token its HMR socket needs.
    let client = http_get(&addr, "/@vite/client").expect("Vite's client");
    let token = client
        .split("const wsToken = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the HMR token in Vite's client")
        .to_owned();
    let mut hmr =
        WsClient::connect_with(&addr, &format!("/?token={token}"), "Sec-WebSocket-Protocol: vite-hmr\r\n")
            .expect("Vite's HMR socket through the front door");
    hmr.set_read_timeout(Some(Duration::from_secs(30)));
    let text = |frame| match frame {
        Frame::Text(text) => text,
        other => panic!("expected a text frame, got {other:?}"),
    };
    assert!(text(hmr.read_frame().expect("hello")).contains("connected"), "Vite says connected");
    for n in 2..=3 {
        save_and_wait(&devserve, &dir.path().join("api/VERSION"), &addr, "/api", &format!("api-{n}"));
    }
    // Still Vite's own socket: an edit of the page's module reaches it as Vite's own message.
    write(&web.join("main.js"), "document.getElementById('app').textContent = 'v2';\n");
    let message = loop {
        let frame = hmr.read_frame().expect("the HMR socket stayed open across api's swaps");
        if let Frame::Text(text) = frame
            && (text.contains("update") || text.contains("full-reload"))
        {
            break text;
        }
    };
    assert!(message.contains("main.js") || message.contains("full-reload"), "{message}");
    assert_eq!(
        devserve.count_events("generation_starting", |e| e["service"] == "web"),
        1,
        "Vite never restarted"
    );
    stop_gracefully(&mut devserve);
}
