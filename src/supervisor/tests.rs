//! The swap policy, driven by synthetic events against a fake process table: no process is
//! started, no signal sent. Each test names the transition of the README's "How it works" it
//! covers.

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::trigger::Trigger;
use super::{Next, Outcome, Supervisor};
use crate::cli::Cli;
use crate::config::Loader;
use crate::event::{Change, Event, ExitStatus, Notification, Request};
use crate::output::Output;
use crate::procs::{FakeProcs, Owner};
use crate::proxy::BrowserEvent;
use crate::sockets;

struct Harness {
    sup: Supervisor<FakeProcs>,
    lines: Arc<Mutex<Vec<String>>>,
}

fn harness(args: &[&str]) -> Harness {
    let mut argv: Vec<&str> = vec!["devserve"];
    argv.extend_from_slice(args);
    if !args.contains(&"--") {
        argv.extend(["--", "true"]);
    }
    let matches = Cli::command().try_get_matches_from(&argv).expect("arguments");
    let cli = Cli::from_arg_matches(&matches).expect("cli");
    let loader = Loader::new(argv.iter().map(OsString::from).collect(), &cli, &matches);
    let config = loader.load().expect("valid config");
    let sockets = sockets::bind_all(&config.listen).expect("bind");
    let (out, lines) = Output::captured(true);
    let (events, _) = crossbeam_channel::unbounded();
    let sup = Supervisor::new(None, config, out, FakeProcs::new(), sockets, events);
    Harness { sup, lines }
}

impl Harness {
    fn start(&mut self) {
        self.sup.start_all(Trigger::start(Instant::now()));
        self.sup.tick(Instant::now());
    }

    fn change(&mut self) {
        let change = Change { paths: vec!["/src/main.rs".into()], since: Instant::now() };
        self.event(Event::Change(change));
    }

    fn event(&mut self, event: Event) {
        self.sup.handle(event, Instant::now());
        self.sup.tick(Instant::now());
    }

    fn at(&mut self, later: Duration) {
        self.sup.tick(Instant::now() + later);
    }

    fn ready(&mut self, generation: u64) {
        for pid in self.sup.procs.workers_of(generation) {
            self.event(Event::Notify(Notification::ready_from(generation, pid)));
        }
    }

    fn exit(&mut self, pid: Pid, status: ExitStatus) {
        self.event(Event::Exited { pid, status });
    }

    fn exit_all(&mut self, generation: u64) {
        for pid in self.sup.procs.workers_of(generation) {
            self.exit(pid, ExitStatus::Code(0));
        }
    }

    fn workers(&self, generation: u64) -> Vec<Pid> {
        self.sup.procs.workers_of(generation)
    }

    fn serving(&self) -> Option<u64> {
        self.sup.services[0].serving.as_ref().map(|g| g.id)
    }

    fn next(&self) -> Option<u64> {
        self.sup.services[0].next.generation().map(|g| g.id)
    }

    fn events(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().expect("lines");
        lines.iter().map(|l| serde_json::from_str(l).expect("JSON")).collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == kind).count()
    }

    fn last(&self, kind: &str) -> serde_json::Value {
        self.events().into_iter().rev().find(|e| e["event"] == kind).unwrap_or_default()
    }

    fn term_sent(&self, pid: Pid) -> bool {
        self.sup.procs.was_signalled(pid, Signal::SIGTERM)
    }
}

const CRASH: ExitStatus = ExitStatus::Code(1);

#[test]
fn swap_the_ready_generation_serves_and_the_old_one_drains() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    assert_eq!(h.next(), Some(1));
    h.ready(1);
    assert_eq!(h.serving(), Some(1));
    let old = h.workers(1);
    h.change();
    assert_eq!((h.serving(), h.next()), (Some(1), Some(2)), "the old one serves while the new one starts");
    assert!(!h.term_sent(old[0]));
    h.ready(2);
    assert_eq!(h.serving(), Some(2));
    assert!(h.term_sent(old[0]), "the old generation is told to stop");
    assert!(h.last("generation_ready")["debounce_ms"].as_u64().is_some());
    h.exit_all(1);
    assert_eq!(h.last("generation_stopped")["generation"], 1);
    assert!(h.sup.services[0].draining.is_empty());
}

#[test]
fn rollback_when_the_new_generation_crashes_before_it_is_ready() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    h.change();
    let new = h.workers(2);
    h.exit(new[0], CRASH);
    assert_eq!((h.serving(), h.next()), (Some(1), None));
    let failed = h.last("generation_failed");
    assert_eq!((failed["generation"].as_u64(), failed["serving"].as_u64()), (Some(2), Some(1)));
    assert!(!h.term_sent(h.workers(1)[0]), "the old generation is left alone");
}

#[test]
fn rollback_when_the_new_generation_is_not_ready_in_time() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--ready-timeout", "5s", "--ready-delay", "1h"]);
    h.start();
    h.ready(1);
    h.change();
    let new = h.workers(2);
    h.at(Duration::from_secs(4));
    assert_eq!(h.next(), Some(2), "still within the timeout");
    h.at(Duration::from_secs(6));
    assert_eq!((h.serving(), h.next()), (Some(1), None));
    assert!(h.term_sent(new[0]), "the late generation is stopped");
    assert!(
        h.last("generation_failed")["reason"].as_str().is_some_and(|r| r.contains("not ready within 5.00s"))
    );
}

#[test]
fn rollback_when_the_build_fails() {
    let mut h = harness(&["-l", "127.0.0.1:0", "-b", "make"]);
    h.start();
    let build = h.sup.procs.pid_of(Owner::Build).expect("first build");
    h.exit(build, ExitStatus::Code(0));
    h.ready(1);
    h.change();
    let build = h.sup.procs.pid_of(Owner::Build).expect("second build");
    h.exit(build, ExitStatus::Code(2));
    assert_eq!((h.serving(), h.next()), (Some(1), None), "no generation starts from a failed build");
    let finished = h.last("build_finished");
    assert_eq!((finished["ok"].as_bool(), finished["serving"].as_u64()), (Some(false), Some(1)));
}

#[test]
fn a_change_during_a_build_cancels_it_and_builds_again() {
    let mut h = harness(&["-l", "127.0.0.1:0", "-b", "make"]);
    h.start();
    let first = h.sup.procs.pid_of(Owner::Build).expect("build");
    h.change();
    assert!(h.sup.procs.was_signalled(first, Signal::SIGKILL), "the stale build is killed");
    assert_eq!(h.sup.procs.owners.get(&first), Some(&Owner::CancelledBuild));
    assert_eq!(h.count("build_restarted"), 1);
    h.exit(first, ExitStatus::Signal(Signal::SIGKILL));
    assert_eq!(h.next(), None, "a cancelled build starts nothing");
}

#[test]
fn cargo_rewriting_its_lock_file_during_the_build_does_not_cancel_it() {
    let mut h = harness(&["-l", "127.0.0.1:0", "-b", "cargo build"]);
    h.start();
    let build = h.sup.procs.pid_of(Owner::Build).expect("build");
    h.event(Event::Change(Change { paths: vec!["/src/Cargo.lock".into()], since: Instant::now() }));
    assert!(!h.sup.procs.was_signalled(build, Signal::SIGKILL), "the build's own write cancelled it");
    assert_eq!(h.count("build_restarted"), 0);
    // Any other file still does; so does the lock file under another build command.
    h.event(Event::Change(Change {
        paths: vec!["/src/Cargo.lock".into(), "/src/main.rs".into()],
        since: Instant::now(),
    }));
    assert!(h.sup.procs.was_signalled(build, Signal::SIGKILL));
    let mut make = harness(&["-l", "127.0.0.1:0", "-b", "make"]);
    make.start();
    make.event(Event::Change(Change { paths: vec!["/src/Cargo.lock".into()], since: Instant::now() }));
    assert_eq!(make.count("build_restarted"), 1);
}

#[test]
fn supersede_a_newer_change_replaces_the_generation_still_starting() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    h.change();
    let starting = h.workers(2);
    h.change();
    assert_eq!(h.next(), Some(3));
    assert!(h.term_sent(starting[0]));
    assert_eq!(h.last("generation_superseded")["by_build"], false);
    assert_eq!(h.serving(), Some(1));
}

#[test]
fn rolling_one_old_worker_stops_per_ready_new_worker() {
    let mut h = harness(&["-l", "127.0.0.1:0", "-n", "2", "--rolling"]);
    h.start();
    assert_eq!(h.workers(1).len(), 2, "a first start is not rolling");
    h.ready(1);
    h.change();
    assert!(matches!(h.sup.services[0].next, Next::Rolling(_)));
    assert_eq!(h.workers(2).len(), 1, "one new worker first");
    h.ready(2);
    let stopped: Vec<Pid> = h.workers(1).into_iter().filter(|p| h.term_sent(*p)).collect();
    assert_eq!(stopped.len(), 1, "one old worker stops for the ready new one");
    assert_eq!(h.workers(2).len(), 2, "and the next new worker starts");
    h.ready(2);
    assert_eq!(h.serving(), Some(2));
    assert!(h.workers(1).iter().all(|p| h.term_sent(*p)));
}

#[test]
fn restart_mode_queues_the_new_generation_until_the_old_one_is_gone() {
    let mut h = harness(&[]);
    h.start();
    h.ready(1);
    h.change();
    assert!(matches!(h.sup.services[0].next, Next::Queued { .. }));
    assert!(h.term_sent(h.workers(1)[0]), "the old one stops first: both would bind the port");
    assert!(h.workers(2).is_empty());
    h.exit_all(1);
    assert_eq!(h.next(), Some(2), "started once the old one is gone");
    assert_eq!(h.last("generation_stopping")["restart_mode"], true);
}

#[test]
fn crash_backoff_then_the_crash_loop_limit() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--max-restarts", "2"]);
    h.start();
    h.ready(1);
    let mut delays = Vec::new();
    for _ in 0..2 {
        let pid = h.workers(1)[0];
        h.exit(pid, CRASH);
        let exited = h.last("worker_exited");
        delays.push(exited["restart_in_ms"].as_u64().expect("restart scheduled"));
        assert!(h.workers(1).is_empty(), "not before the backoff");
        h.at(Duration::from_secs(11));
        assert_eq!(h.workers(1).len(), 1, "restarted after the backoff");
    }
    assert_eq!(delays, vec![100, 200], "the backoff doubles");
    let pid = h.workers(1)[0];
    h.exit(pid, CRASH);
    let exited = h.last("worker_exited");
    assert_eq!((exited["crash_loop"].as_bool(), exited["restart_in_ms"].is_null()), (Some(true), true));
    h.at(Duration::from_secs(60));
    assert!(h.workers(1).is_empty(), "no more restarts");
    assert!(h.sup.services[0].serving.as_ref().is_some_and(|g| g.gave_up));
}

#[test]
fn ttin_during_a_start_is_no_rolling_step() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    h.change();
    h.event(Event::Request(Request::MoreWorkers));
    assert_eq!(h.workers(1).len(), 2, "the serving generation grows at once");
    assert!(matches!(h.sup.services[0].next, Next::Starting(_)));
    h.ready(2);
    assert_eq!(h.serving(), Some(2), "promoted, not rolled");
    assert!(h.workers(1).iter().all(|p| h.term_sent(*p)), "the old generation stops whole");
    assert_eq!(h.workers(2).len(), 2, "the new one is topped up to the new count");
}

#[test]
fn ttou_retires_the_oldest_worker_and_never_goes_under_one() {
    let mut h = harness(&["-l", "127.0.0.1:0", "-n", "2"]);
    h.start();
    h.ready(1);
    h.event(Event::Request(Request::FewerWorkers));
    let stopped: Vec<Pid> = h.workers(1).into_iter().filter(|p| h.term_sent(*p)).collect();
    assert_eq!(stopped.len(), 1);
    h.exit(stopped[0], ExitStatus::Code(0));
    assert_eq!(h.last("worker_stopped")["pid"], stopped[0].as_raw());
    h.event(Event::Request(Request::FewerWorkers));
    assert_eq!(h.last("workers_changed")["at_minimum"], true);
}

#[test]
fn shutdown_while_serving_stops_gracefully_then_kills() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--stop-timeout", "2s"]);
    h.start();
    h.ready(1);
    let pid = h.workers(1)[0];
    h.event(Event::Request(Request::Stop));
    assert!(h.term_sent(pid));
    assert!(!h.sup.finished());
    h.at(Duration::from_secs(3));
    assert!(h.sup.procs.was_signalled(pid, Signal::SIGKILL), "killed at the stop timeout");
    h.exit(pid, ExitStatus::Signal(Signal::SIGKILL));
    assert!(h.sup.finished());
}

#[test]
fn shutdown_during_a_build_a_start_or_a_queue() {
    let mut h = harness(&["-l", "127.0.0.1:0", "-b", "make"]);
    h.start();
    let build = h.sup.procs.pid_of(Owner::Build).expect("build");
    h.event(Event::Request(Request::Stop));
    assert!(h.sup.procs.was_signalled(build, Signal::SIGKILL));
    assert!(!h.sup.finished(), "waits for the build to be reaped");
    h.exit(build, ExitStatus::Signal(Signal::SIGKILL));
    assert!(h.sup.finished());

    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    h.change();
    h.event(Event::Request(Request::Stop));
    assert!(h.workers(1).iter().chain(&h.workers(2)).all(|p| h.term_sent(*p)), "both generations stop");
    h.change();
    assert_eq!(h.next(), None, "no new generation once stopping");
    h.event(Event::Request(Request::Stop));
    assert!(
        h.workers(2).iter().all(|p| h.sup.procs.was_signalled(*p, Signal::SIGKILL)),
        "a second TERM kills"
    );

    let mut h = harness(&[]);
    h.start();
    h.ready(1);
    h.change();
    h.event(Event::Request(Request::Stop));
    h.exit_all(1);
    assert!(h.sup.finished(), "the queued generation never starts");
    assert!(h.workers(2).is_empty());
}

#[test]
fn once_succeeds_interrupts_or_times_out_its_probe() {
    let mut h = harness(&["--once", "-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    assert_eq!(h.sup.once.outcome, Outcome::Success);
    assert!(h.sup.shutdown.is_some());

    let mut h = harness(&["--once", "-l", "127.0.0.1:0", "--probe", "curl x", "--probe-timeout", "1s"]);
    h.start();
    h.ready(1);
    let probe = h.sup.procs.pid_of(Owner::Probe).expect("probe");
    h.at(Duration::from_secs(2));
    assert!(h.sup.procs.was_signalled(probe, Signal::SIGKILL));
    assert_eq!(h.sup.once.outcome, Outcome::ProbeFailed);

    let mut h = harness(&["--once", "-l", "127.0.0.1:0", "--probe", "curl x"]);
    h.start();
    h.ready(1);
    h.event(Event::Request(Request::Stop));
    assert_eq!(h.sup.once.outcome, Outcome::Interrupted);
}

#[test]
fn a_killed_sentinel_is_restarted_and_a_stranger_is_ignored() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    let sentinel = h.sup.procs.add_sentinel();
    h.start();
    h.exit(sentinel, ExitStatus::Signal(Signal::SIGKILL));
    let restarted = h.last("sentinel_restarted");
    assert!(restarted["new_pid"].as_i64().is_some(), "{restarted}");
    h.exit(Pid::from_raw(4_000_000), ExitStatus::Code(0));
    assert_eq!(h.next(), Some(1), "an orphan's exit changes nothing");
}

// ----- the front door ----------------------------------------------------------------------------

/// A proxy that records what it is told.
#[derive(Clone, Default)]
struct FakeFront(Arc<Mutex<Vec<crate::proxy::ProxyCommand>>>);

impl super::front::FrontDoor for FakeFront {
    fn send(&self, command: crate::proxy::ProxyCommand) {
        self.0.lock().expect("commands").push(command);
    }

    fn stats(&self) -> crate::proxy::ProxyStats {
        crate::proxy::ProxyStats::default()
    }
}

fn behind_front(args: &[&str]) -> (Harness, FakeFront) {
    let mut all = vec!["--proxy", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut h = harness(&all);
    let front = FakeFront::default();
    h.sup.front.door = Some(Box::new(front.clone()));
    (h, front)
}

impl Harness {
    /// The front door's prober found every worker of `generation` accepting.
    fn upstreams_ready(&mut self, generation: u64) {
        for pid in self.sup.procs.workers_of(generation) {
            self.event(Event::UpstreamReady { generation, pid });
        }
    }
}

/// What the proxy was told about routing (the browsers' events apart).
fn commands(front: &FakeFront) -> Vec<crate::proxy::ProxyCommand> {
    let all = front.0.lock().expect("commands").clone();
    all.into_iter().filter(|c| !matches!(c, crate::proxy::ProxyCommand::Browser(_))).collect()
}

/// Everything the proxy was told, in order.
fn all_commands(front: &FakeFront) -> Vec<crate::proxy::ProxyCommand> {
    front.0.lock().expect("commands").clone()
}

#[test]
fn front_door_routes_a_generation_once_ready_and_drains_the_old_one_before_signalling_it() {
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&["--stop-timeout", "5s"]);
    h.start();
    assert_eq!(h.sup.procs.probes.len(), 1, "each worker's port is probed");
    assert!(
        !commands(&front).iter().any(|c| matches!(c, ProxyCommand::Serve { .. })),
        "nothing routed before it is ready"
    );
    h.upstreams_ready(1);
    assert!(
        matches!(commands(&front).last(), Some(ProxyCommand::Serve { site: 0, generation: 1, upstreams }) if upstreams.len() == 1)
    );
    // Pages reload only once the proxy routes to the ready generation.
    let all = all_commands(&front);
    assert!(
        matches!(
            &all[all.len() - 2..],
            [
                ProxyCommand::Serve { site: 0, generation: 1, .. },
                ProxyCommand::Browser(BrowserEvent::Ready { generation: 1, .. })
            ]
        ),
        "{all:?}"
    );
    let old = h.workers(1);
    h.change();
    assert_eq!(h.next(), Some(2), "generations overlap: no restart-mode queue");
    h.upstreams_ready(2);
    let sent = commands(&front);
    assert!(matches!(sent[sent.len() - 2], ProxyCommand::Serve { site: 0, generation: 2, .. }), "{sent:?}");
    assert!(matches!(sent[sent.len() - 1], ProxyCommand::Drain { generation: 1 }), "{sent:?}");
    assert!(!h.term_sent(old[0]), "no signal while requests are in flight");
    h.event(Event::Front(crate::event::FrontEvent::Drained { generation: 1 }));
    assert!(h.term_sent(old[0]), "signalled once drained");
}

#[test]
fn front_door_closes_what_is_left_at_the_stop_timeout_and_holds_while_nothing_serves() {
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&["--stop-timeout", "2s"]);
    h.start();
    h.upstreams_ready(1);
    let old = h.workers(1);
    h.change();
    h.upstreams_ready(2);
    h.at(Duration::from_secs(3));
    assert!(commands(&front).contains(&ProxyCommand::Close { generation: 1 }));
    assert!(h.term_sent(old[0]), "signalled at the stop timeout");
    // The serving worker crashes: its upstream goes; its restart comes back on a new port.
    let pid = h.workers(2)[0];
    h.exit(pid, CRASH);
    assert!(matches!(commands(&front).last(), Some(ProxyCommand::RemoveUpstream { generation: 2, .. })));
    h.at(Duration::from_millis(200));
    h.upstreams_ready(2);
    assert!(matches!(commands(&front).last(), Some(ProxyCommand::AddUpstream { generation: 2, .. })));

    let (mut h, front) = behind_front(&["-b", "make"]);
    h.start();
    assert!(
        matches!(commands(&front).last(), Some(ProxyCommand::Hold { site: 0, reason }) if reason.contains("building"))
    );
    let build = h.sup.procs.pid_of(Owner::Build).expect("build");
    h.exit(build, ExitStatus::Code(2));
    assert!(
        matches!(commands(&front).last(), Some(ProxyCommand::BuildFailed { site: 0, status, .. }) if status.contains("status 2"))
    );
    assert!(matches!(
        all_commands(&front).last(),
        Some(ProxyCommand::Browser(BrowserEvent::BuildFailed { command, .. })) if command == "make"
    ));
}

#[test]
fn front_door_ttou_unroutes_the_retiring_worker_before_it_stops() {
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&["-n", "2"]);
    h.start();
    h.upstreams_ready(1);
    let ports: Vec<std::net::SocketAddr> = match commands(&front).last() {
        Some(ProxyCommand::Serve { site: 0, generation: 1, upstreams }) => upstreams.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ports.len(), 2);
    h.event(Event::Request(Request::FewerWorkers));
    let retiring: Vec<Pid> = h.workers(1).into_iter().filter(|p| h.term_sent(*p)).collect();
    assert_eq!(retiring.len(), 1);
    let removed = match commands(&front).last() {
        Some(ProxyCommand::RemoveUpstream { generation: 1, upstream }) => *upstream,
        other => panic!("the retiring worker leaves the routing as it is signalled: {other:?}"),
    };
    assert!(ports.contains(&removed));
    let kept = ports.iter().find(|p| **p != removed).copied();
    h.exit(retiring[0], ExitStatus::Code(0));
    assert_eq!(h.last("worker_stopped")["pid"], retiring[0].as_raw());
    assert!(
        !commands(&front)
            .iter()
            .any(|c| matches!(c, ProxyCommand::RemoveUpstream { upstream, .. } if Some(*upstream) == kept)),
        "the other worker stays routed"
    );
}

#[test]
fn front_door_readiness_is_observed_never_assumed() {
    let (mut h, _front) = behind_front(&["--ready-delay", "10ms"]);
    h.start();
    h.at(Duration::from_secs(1));
    assert_eq!(h.serving(), None, "up for the ready delay is not ready behind the proxy");
    h.upstreams_ready(1);
    assert_eq!(h.serving(), Some(1));
}

#[test]
fn app_port_holds_across_the_restart_and_rolls_back_to_the_previous_command() {
    use crate::event::FrontEvent;
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&["--app-port", "3000"]);
    h.start();
    h.upstreams_ready(1);
    h.change();
    assert!(matches!(h.sup.services[0].next, Next::Queued { .. }), "one port: the old one goes first");
    assert!(commands(&front).contains(&ProxyCommand::Drain { generation: 1 }));
    h.event(Event::Front(FrontEvent::Drained { generation: 1 }));
    assert!(
        commands(&front).iter().any(|c| matches!(c, ProxyCommand::Hold { .. })),
        "requests are held meanwhile"
    );
    h.exit_all(1);
    assert_eq!(h.next(), Some(2));
    let new = h.workers(2);
    h.exit(new[0], CRASH);
    assert_eq!(h.next(), Some(3), "the previous command starts again");
    h.upstreams_ready(3);
    assert_eq!(h.serving(), Some(3));
    assert!(matches!(commands(&front).last(), Some(ProxyCommand::Serve { site: 0, generation: 3, .. })));
}

#[test]
fn front_door_a_failed_first_generation_is_told_at_once_not_held() {
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&[]);
    h.start();
    let pid = h.workers(1)[0];
    h.exit(pid, CRASH);
    assert!(
        matches!(commands(&front).last(), Some(ProxyCommand::Down { site: 0, reason }) if reason.contains("gen 1 failed")),
        "nothing is starting: requests are answered at once, not held: {:?}",
        commands(&front).last()
    );
    // The next change starts a generation again: requests wait for it.
    h.change();
    assert!(matches!(
        commands(&front).last(),
        Some(ProxyCommand::Hold { .. }) | Some(ProxyCommand::Serve { .. })
    ));
}

#[test]
fn front_door_an_app_found_on_a_port_of_its_own_is_proxied_there_as_with_app_port() {
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&[]);
    h.start();
    let pid = h.workers(1)[0];
    h.event(Event::OwnPort { generation: 1, pid, given: Some(41234), found: vec![3000] });
    assert_eq!(h.last("own_port")["found"], serde_json::json!([3000]));
    assert_eq!(h.last("app_port_found")["port"], 3000);
    assert_eq!(h.serving(), Some(1), "the worker is ready on the port it listens on");
    let fixed = std::net::SocketAddr::from(([127, 0, 0, 1], 3000));
    assert!(
        matches!(commands(&front).last(), Some(ProxyCommand::Serve { site: 0, generation: 1, upstreams }) if upstreams == &[fixed])
    );
    // From now on it is --app-port: the old generation goes first, requests are held meanwhile.
    h.change();
    assert!(matches!(h.sup.services[0].next, Next::Queued { .. }), "one port: the old one goes first");
    assert!(commands(&front).contains(&ProxyCommand::Drain { generation: 1 }));
}

#[test]
fn front_door_several_ports_or_none_are_only_said() {
    let (mut h, _front) = behind_front(&[]);
    h.start();
    let pid = h.workers(1)[0];
    h.event(Event::OwnPort { generation: 1, pid, given: Some(41234), found: vec![] });
    h.event(Event::OwnPort { generation: 1, pid, given: Some(41234), found: vec![3000, 3001] });
    assert_eq!(h.serving(), None, "no port to choose: still waiting");
    assert_eq!(h.count("own_port"), 2);
    assert_eq!(h.count("app_port_found"), 0);
}

#[test]
fn max_requests_starts_the_replacement_first_and_retires_the_worker_once_it_is_routed() {
    use crate::event::FrontEvent;
    use crate::proxy::ProxyCommand;
    let (mut h, front) = behind_front(&["--max-requests", "5"]);
    h.start();
    h.upstreams_ready(1);
    let old = h.workers(1)[0];
    let port = h.sup.services[0].serving.as_ref().and_then(|g| g.port_of(old)).expect("a port");
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    h.event(Event::Front(FrontEvent::Recycle { generation: 1, upstream, requests: 5 }));
    assert_eq!(h.workers(1).len(), 2, "the replacement starts beside it");
    assert!(!h.term_sent(old), "not stopped before its replacement is ready");
    assert!(!commands(&front).iter().any(|c| matches!(c, ProxyCommand::RemoveUpstream { .. })));
    h.upstreams_ready(1);
    let routed = commands(&front);
    let added = routed.iter().position(|c| matches!(c, ProxyCommand::AddUpstream { generation: 1, .. }));
    let removed = routed.iter().position(|c| *c == ProxyCommand::RemoveUpstream { generation: 1, upstream });
    assert!(added.is_some_and(|a| removed.is_some_and(|r| a < r)), "routed first, then unrouted: {routed:?}");
    assert!(h.term_sent(old), "then it drains and stops");
    assert_eq!(h.last("worker_recycled")["requests"], 5);
    h.exit(old, ExitStatus::Code(0));
    assert_eq!(h.workers(1).len(), 1, "one worker again, never one fewer");
}

// `--accept`: a process per connection (`per_connection.rs`).

/// A connected TCP pair: (the client's end, the end devserve accepted).
fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    (client, accepted)
}

impl Harness {
    /// A connection arrives; returns the client's end and the pid started for it.
    fn connection(&mut self) -> (std::net::TcpStream, Pid) {
        let (client, accepted) = tcp_pair();
        let peer = accepted.peer_addr().ok();
        let before = self.sup.procs.spawned.len();
        self.event(Event::Connection(crate::event::Connection { stream: accepted.into(), peer }));
        let (pid, _, _) = self.sup.procs.spawned.get(before).cloned().expect("a process for the connection");
        (client, pid)
    }

    fn program_of(&self, pid: Pid) -> Option<u64> {
        match self.sup.procs.owners.get(&pid) {
            Some(Owner::Connection { generation }) => Some(*generation),
            _ => None,
        }
    }
}

#[test]
fn accept_the_first_program_serves_at_once_and_each_connection_gets_its_process() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--accept"]);
    h.start();
    assert_eq!(h.last("program_ready")["serving"], serde_json::Value::Null);
    let (_a, first) = h.connection();
    let (_b, second) = h.connection();
    assert_ne!(first, second);
    assert_eq!((h.program_of(first), h.program_of(second)), (Some(1), Some(1)));
    h.exit(first, CRASH);
    assert_eq!(h.last("connection_failed")["pid"], first.as_raw());
    h.exit(second, ExitStatus::Code(0));
    assert_eq!(h.count("connection_failed"), 1, "a clean exit says nothing");
}

#[test]
fn accept_a_new_program_is_tried_on_one_connection_while_the_others_keep_the_serving_one() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--accept"]);
    h.start();
    h.change();
    assert_eq!(h.last("program_ready")["serving"], 1);
    let (_trial_client, trial) = h.connection();
    let (_other_client, other) = h.connection();
    assert_eq!(h.program_of(trial), Some(2), "the next connection is the candidate's trial");
    assert_eq!(h.program_of(other), Some(1), "the others keep the serving program meanwhile");
    h.exit(trial, ExitStatus::Code(0));
    assert_eq!(h.last("program_serving")["generation"], 2);
    assert_eq!(h.last("program_serving")["replaced"], 1);
    let (_next_client, next) = h.connection();
    assert_eq!(h.program_of(next), Some(2));
}

#[test]
fn accept_a_trial_that_fails_having_touched_nothing_is_rolled_back_and_its_connection_rerun() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--accept"]);
    h.start();
    h.change();
    let (_client, trial) = h.connection();
    let before = h.sup.procs.spawned.len();
    h.exit(trial, CRASH);
    let rolled = h.last("program_rolled_back");
    assert_eq!(
        (rolled["generation"].clone(), rolled["serving"].clone(), rolled["rerun"].clone()),
        (2.into(), 1.into(), true.into())
    );
    let (rerun, _, _) = h.sup.procs.spawned.get(before).cloned().expect("the connection started again");
    assert_eq!(h.program_of(rerun), Some(1), "the serving program gets the same connection");
    let (_c, next) = h.connection();
    assert_eq!(h.program_of(next), Some(1), "no candidate any more");
}

#[test]
fn accept_a_trial_that_read_its_request_is_not_rerun_and_one_that_stays_up_passes() {
    use std::io::{Read, Write};
    let mut h = harness(&["-l", "127.0.0.1:0", "--accept"]);
    h.start();
    h.change();
    let (mut client, trial) = h.connection();
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
    // The trial's process read the request: a copy of the connection stands in for it.
    let trial_stream =
        h.sup.connections.trial.as_ref().map(|t| t.stream.try_clone().expect("dup")).expect("a trial");
    let mut process_end = std::net::TcpStream::from(trial_stream);
    let mut head = [0u8; 4];
    process_end.read_exact(&mut head).expect("read");
    let before = h.sup.procs.spawned.len();
    h.exit(trial, CRASH);
    assert_eq!(h.last("program_rolled_back")["rerun"], false);
    assert_eq!(h.sup.procs.spawned.len(), before, "a connection already read is not run again");
    // A later build whose trial stays up for the ready delay serves.
    h.change();
    let (_c, slow) = h.connection();
    assert_eq!(h.program_of(slow), Some(3));
    h.at(Duration::from_secs(2));
    assert_eq!(h.last("program_serving")["generation"], 3);
}

#[test]
fn accept_a_stop_signals_every_connection_process_and_kills_them_at_the_stop_timeout() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--accept", "--stop-timeout", "1s"]);
    h.start();
    let (_a, first) = h.connection();
    h.event(Event::Request(Request::Stop));
    assert!(h.term_sent(first));
    h.at(Duration::from_secs(2));
    assert!(h.sup.procs.was_signalled(first, Signal::SIGKILL));
    h.exit(first, ExitStatus::Signal(Signal::SIGKILL));
    assert!(h.sup.finished());
}

// Upgrades (`upgrades.rs`): the policy, with a fake process table standing in for the new
// devserve.

impl Harness {
    /// Asks for an upgrade; returns the pid of the new devserve.
    fn upgrade(&mut self) -> Pid {
        self.sup.upgrades.exe = Some("/bin/true".into());
        self.event(Event::Request(Request::Upgrade));
        self.sup.procs.pid_of(Owner::Successor).expect("a new devserve")
    }
}

#[test]
fn upgrade_the_old_devserve_serves_until_the_new_one_does_then_retires_and_forwards() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    let worker = h.workers(1)[0];
    let new = h.upgrade();
    assert_eq!(h.serving(), Some(1), "serving while the new one starts");
    assert!(!h.term_sent(worker));
    h.event(Event::Successor { pid: new, news: crate::event::SuccessorNews::Ready });
    assert_eq!(h.last("upgrade_done")["pid"], new.as_raw());
    assert!(h.term_sent(worker), "its own generation drains and stops");
    assert!(h.sup.upgrades.anchored);
    h.change();
    assert_eq!(h.next(), None, "an anchor builds and starts nothing");
    h.event(Event::Request(Request::Reload));
    assert!(h.sup.procs.was_signalled(new, Signal::SIGHUP), "requests go to the devserve that serves");
    h.exit_all(1);
    h.event(Event::Request(Request::Stop));
    assert!(h.term_sent(new));
    assert!(!h.sup.finished(), "waits for the devserve that serves");
    h.exit(new, ExitStatus::Code(0));
    assert_eq!(h.last("upgrade_serving_stopped")["pid"], new.as_raw());
    assert!(h.sup.finished());
}

#[test]
fn upgrade_a_new_devserve_that_fails_changes_nothing() {
    let mut h = harness(&["-l", "127.0.0.1:0"]);
    h.start();
    h.ready(1);
    let worker = h.workers(1)[0];
    let new = h.upgrade();
    h.event(Event::Request(Request::Upgrade));
    assert_eq!(h.last("upgrade_busy")["pid"], new.as_raw(), "one upgrade at a time");
    h.exit(new, CRASH);
    assert!(h.last("upgrade_failed")["reason"].as_str().is_some_and(|r| r.contains("status 1")));
    assert_eq!(h.serving(), Some(1));
    assert!(!h.term_sent(worker));
    assert!(!h.sup.upgrades.anchored);
    h.change();
    assert_eq!(h.next(), Some(2), "still building and swapping");
}

#[test]
fn accept_a_process_the_acceptor_started_is_the_supervisors_even_when_reaped_before_it_is_told() {
    let mut h = harness(&["-l", "127.0.0.1:0", "--accept"]);
    h.start();
    let report = || std::fs::File::open("/dev/null").expect("an empty exec report");
    // The usual order: told, then reaped.
    let first = Pid::from_raw(424_242);
    h.event(Event::Started { pid: first, program: 1, peer: None, report: report() });
    assert_eq!(h.program_of(first), Some(1));
    h.exit(first, CRASH);
    assert_eq!(h.last("connection_failed")["pid"], first.as_raw());
    // Reaped first (the reaper was quicker than the acceptor's message): counted once all the same.
    let second = Pid::from_raw(424_243);
    h.exit(second, CRASH);
    h.event(Event::Started { pid: second, program: 1, peer: None, report: report() });
    assert_eq!(h.last("connection_failed")["pid"], second.as_raw());
    assert!(h.sup.connections.live.is_empty(), "no process left counted as running");
    assert_eq!(h.sup.procs.pid_of(Owner::Connection { generation: 1 }), None);
}

/// A harness for `devserve.toml` `text` with `[services.NAME]` tables, in a scratch folder whose
/// subfolders `folders` exist (for the services' `watch`); each service watches its rules there.
fn services_harness(text: &str, folders: &[&str]) -> (Harness, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("devserve-services-policy-{}-{}", std::process::id(), text.len()));
    for folder in folders {
        std::fs::create_dir_all(dir.join(folder)).expect("folder");
    }
    let file = dir.join("devserve.toml");
    let text = text.replace("DIR", dir.to_str().expect("utf-8"));
    std::fs::write(&file, text).expect("config");
    let argv = ["devserve", "--config", file.to_str().expect("utf-8")];
    let matches = Cli::command().try_get_matches_from(argv).expect("arguments");
    let cli = Cli::from_arg_matches(&matches).expect("cli");
    let loader = Loader::new(argv.iter().map(OsString::from).collect(), &cli, &matches);
    let config = loader.load().expect("valid config");
    let sockets =
        config.services.iter().map(|s| sockets::bind_all(&s.config.listen).expect("bind")).collect();
    let (out, lines) = Output::captured(true);
    let (events, _) = crossbeam_channel::unbounded();
    let mut sup = Supervisor::with_services(None, config, out, FakeProcs::new(), sockets, events);
    sup.watch_each(&[]).expect("filters");
    (Harness { sup, lines }, dir)
}

const TWO_SERVICES: &str = "[services.a]\nwatch = [\"DIR/a\"]\ncommand = [\"true\"]\nlisten = [\"127.0.0.1:0\"]\n\
                            [services.b]\nwatch = [\"DIR/b\"]\ncommand = [\"true\"]\nlisten = [\"127.0.0.1:0\"]\n";

#[test]
fn services_a_change_and_a_failure_stay_in_their_service() {
    let (mut h, dir) = services_harness(TWO_SERVICES, &["a", "b"]);
    h.start();
    h.ready(1);
    h.ready(2);
    let b_workers = h.workers(2);
    let change = Change { paths: vec![dir.join("a/lib.rs")], since: Instant::now() };
    h.event(Event::Change(change));
    assert_eq!(h.sup.services[0].next.generation().map(|g| g.id), Some(3), "a starts gen 3");
    assert!(h.sup.services[1].next.generation().is_none(), "b starts nothing");
    // a's new generation crashes before it is ready: a rolls back, b is not touched.
    let crashed = h.workers(3)[0];
    h.exit(crashed, CRASH);
    assert_eq!(h.sup.services[0].serving.as_ref().map(|g| g.id), Some(1), "a's gen 1 serves on");
    assert_eq!(h.sup.services[1].serving.as_ref().map(|g| g.id), Some(2), "b's gen 2 serves on");
    assert!(b_workers.iter().all(|pid| !h.term_sent(*pid)), "b was never signalled");
    let failed = h.last("generation_failed");
    assert_eq!((failed["generation"].as_u64(), failed["service"].as_str()), (Some(3), Some("a")));
}

#[test]
fn services_depends_on_orders_the_first_start_and_reverses_the_stop() {
    let text = TWO_SERVICES.replace("[services.b]\n", "[services.b]\ndepends-on = [\"a\"]\n");
    let (mut h, _dir) = services_harness(&text, &["a", "b"]);
    h.start();
    assert_eq!(h.sup.services[0].next.generation().map(|g| g.id), Some(1), "a starts");
    assert!(h.sup.services[1].next.generation().is_none() && h.sup.services[1].waiting.is_some(), "b waits");
    h.ready(1);
    assert_eq!(h.sup.services[1].next.generation().map(|g| g.id), Some(2), "b starts once a is ready");
    h.ready(2);
    let (a, b) = (h.workers(1), h.workers(2));
    h.event(Event::Request(Request::Stop));
    assert!(b.iter().all(|pid| h.term_sent(*pid)), "b, which depends on a, is told first");
    assert!(a.iter().all(|pid| !h.term_sent(*pid)), "a waits for b to be gone");
    h.exit_all(2);
    assert!(a.iter().all(|pid| h.term_sent(*pid)), "then a");
}

#[test]
fn services_a_change_to_a_service_waiting_for_its_dependencies_joins_its_first_start() {
    let text = TWO_SERVICES.replace("[services.b]\n", "[services.b]\ndepends-on = [\"a\"]\n");
    let (mut h, dir) = services_harness(&text, &["a", "b"]);
    h.start();
    let change = Change { paths: vec![dir.join("b/lib.rs")], since: Instant::now() };
    h.event(Event::Change(change));
    assert!(h.sup.services[1].next.generation().is_none(), "b still waits for a");
    h.ready(1);
    assert_eq!(h.sup.services[1].next.generation().map(|g| g.id), Some(2), "one start, once a is ready");
    assert_eq!(h.count("generation_starting"), 2);
}
