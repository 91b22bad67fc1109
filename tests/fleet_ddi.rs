//! The DDI layer (`flashline::fleet::ddi`) against `hawkbit_mock`, an httpmock server that
//! answers as hawkBit's DDI API does and counts what it was sent, plus a scripted loopback
//! server for hostile answers.
//!
//! hawkbit_mock matches request bodies exactly, so every feedback assertion below checks the
//! JSON that went on the wire, and its hit counters check that it went exactly once.
//! Its handles are `Rc`, so each test drives the mock from the test thread; the client under
//! test runs its own runtime and blocks.
#![cfg(feature = "fleet")]

use flashline::fleet::ddi::{
    device_attributes, trim_details, write_if_still_wanted, ActionId, DdiAuth, DdiError,
    Deployment, Execution, Feedback, HawkbitDdi, Outcome, PackageRef, Rollouts, TargetId,
    CANCEL_ACCEPTED,
};
use flashline::fleet::secret::Secret;
use hawkbit::ddi::{Execution as MockExecution, Finished, Type};
use hawkbit_mock::ddi::{
    ChunkProtocol, DeploymentBuilder, Server, ServerBuilder, Target, TargetAuthorization,
};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use url::Url;

const SALT: &[u8] = b"fleet-test-salt";
const TARGET_NAME: &str = "modem-x-1.2.3.flp";
const SHA256: &str = "5010fbc2769bfc655d15aa9a883703d5b19a320732d37f70703ab3e3b416a602";
/// 6 GiB: larger than the `hawkbit` crate's u32 sizes can hold.
const LENGTH: u64 = 6 << 30;
/// hawkbit_mock's gateway token for the tenant DEFAULT.
const GATEWAY_TOKEN: &str = "KeyDEFAULT";

fn device(n: u32) -> TargetId {
    TargetId::derive(
        SALT,
        &format!("R58M{n:07}"),
        Some(&format!("3569380356{n:05}")),
    )
}

fn gateway_server() -> Server {
    ServerBuilder::default()
        .target_authorization(TargetAuthorization::GatewayToken)
        .build()
}

fn client(server: &Server, auth: DdiAuth) -> HawkbitDdi {
    let base = Url::parse(&server.base_url()).unwrap();
    HawkbitDdi::with_auth(base, "DEFAULT", auth, Duration::from_secs(10)).unwrap()
}

fn gateway(server: &Server) -> HawkbitDdi {
    let base = Url::parse(&server.base_url()).unwrap();
    HawkbitDdi::new(base, "DEFAULT", Secret::new(GATEWAY_TOKEN)).unwrap()
}

/// A distribution set as a flashline chain sets it up: one software module without
/// artifacts whose target-visible metadata names the TUF target.
fn push_flashline_deployment(target: &Target, action: u64) {
    let metadata = [
        ("tuf-target", TARGET_NAME.to_string()),
        ("tuf-sha256", SHA256.to_string()),
        ("tuf-length", LENGTH.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    target.push_deployment(
        DeploymentBuilder::new(&action.to_string(), Type::Forced, Type::Forced)
            .chunk_with_metadata(
                ChunkProtocol::BOTH,
                "firmware",
                "1.2.3",
                "modem-x",
                vec![],
                metadata,
            )
            .build(),
    );
}

fn expected_deployment(action: u64) -> Deployment {
    Deployment {
        action: ActionId(action),
        package: PackageRef {
            tuf_target: TARGET_NAME.into(),
            sha256: SHA256.into(),
            size: LENGTH,
        },
        forced: true,
    }
}

#[test]
fn poll_then_deployment_named_by_chunk_metadata() {
    logs();
    let server = gateway_server();
    let id = device(1);
    let target = server.add_target(id.as_str());
    let ddi = gateway(&server);

    let idle = ddi.poll(&id).unwrap();
    assert_eq!(idle.sleep, Duration::from_secs(60));
    assert_eq!(
        (idle.deployment, idle.cancel, idle.wants_config),
        (None, None, false)
    );
    assert_eq!(target.poll_hits(), 1);

    push_flashline_deployment(&target, 10);
    let poll = ddi.poll(&id).unwrap();
    assert_eq!(poll.deployment, Some(expected_deployment(10)));
    assert_eq!(poll.cancel, None);
    assert_eq!(
        target.poll_hits(),
        1,
        "one poll since the deployment was pushed"
    );
    assert_eq!(target.deployment_hits(), 1);
}

#[test]
fn config_data_is_merged_and_checked_before_sending() {
    logs();
    let server = gateway_server();
    let id = device(2);
    let target = server.add_target(id.as_str());
    let ddi = gateway(&server);
    let attributes = device_attributes("MF920U", "BD_MF920UV1.0.0B05", "S12", "3");
    target.request_config(json!({
        "mode": "merge",
        "data": {"model": "MF920U", "firmware": "BD_MF920UV1.0.0B05", "station": "S12", "bench_slot": "3"}
    }));

    assert!(ddi.poll(&id).unwrap().wants_config);
    ddi.put_config(&id, &attributes).unwrap();
    assert_eq!(target.config_data_hits(), 1);

    // hawkBit keeps 128 characters per value: refused here, nothing sent.
    let long = device_attributes(&"M".repeat(129), "1", "S12", "3");
    assert!(matches!(
        ddi.put_config(&id, &long),
        Err(DdiError::Invalid(_))
    ));
    assert!(matches!(
        ddi.put_config(&id, &Default::default()),
        Err(DdiError::Invalid(_))
    ));
    assert_eq!(target.config_data_hits(), 1);
}

#[test]
fn feedback_proceeding_then_closed_arrives_once_each() {
    logs();
    let server = gateway_server();
    let ddi = gateway(&server);
    let (ok_id, bad_id) = (device(3), device(4));
    let (ok, bad) = (
        server.add_target(ok_id.as_str()),
        server.add_target(bad_id.as_str()),
    );
    push_flashline_deployment(&ok, 20);
    push_flashline_deployment(&bad, 21);
    assert_eq!(
        ddi.poll(&ok_id).unwrap().deployment,
        Some(expected_deployment(20))
    );
    assert_eq!(
        ddi.poll(&bad_id).unwrap().deployment,
        Some(expected_deployment(21))
    );

    // A trail longer than hawkBit takes (it answers 429 past 50 lines) goes out trimmed.
    let long_trail: Vec<String> = (0..80)
        .map(|i| format!("boot: block {i} written"))
        .collect();
    let trimmed = trim_details(&long_trail);
    let trimmed: Vec<&str> = trimmed.iter().map(String::as_str).collect();
    assert_eq!(trimmed.len(), 50);

    let ok_proceeding = ok.expect_deployment_feedback(
        "20",
        MockExecution::Proceeding,
        Finished::None,
        None,
        vec!["flashing 3 images"],
    );
    let ok_closed = ok.expect_deployment_feedback(
        "20",
        MockExecution::Closed,
        Finished::Success,
        Some(json!({"cnt": 3, "of": 3})),
        trimmed.clone(),
    );
    let bad_proceeding = bad.expect_deployment_feedback(
        "21",
        MockExecution::Proceeding,
        Finished::None,
        None,
        vec!["flashing 3 images"],
    );
    let bad_closed = bad.expect_deployment_feedback(
        "21",
        MockExecution::Closed,
        Finished::Failure,
        None,
        vec!["system: device answered FAIL"],
    );

    let proceeding = Feedback::new(Execution::Proceeding, vec!["flashing 3 images".into()]);
    ddi.feedback(&ok_id, &ActionId(20), &proceeding).unwrap();
    ddi.feedback(&bad_id, &ActionId(21), &proceeding).unwrap();
    let success =
        Feedback::new(Execution::Closed(Outcome::Success), long_trail).with_progress(3, 3);
    ddi.feedback(&ok_id, &ActionId(20), &success).unwrap();
    let failure = Feedback::new(
        Execution::Closed(Outcome::Failure),
        vec!["system: device answered FAIL".into()],
    );
    ddi.feedback(&bad_id, &ActionId(21), &failure).unwrap();

    for (name, mock) in [
        ("ok proceeding", &ok_proceeding),
        ("ok closed", &ok_closed),
        ("bad proceeding", &bad_proceeding),
        ("bad closed", &bad_closed),
    ] {
        assert_eq!(mock.calls(), 1, "{name}");
    }

    // Feedback for an action the server does not know is ActionGone (the mock answers 404).
    assert!(matches!(
        ddi.feedback(&ok_id, &ActionId(99), &proceeding),
        Err(DdiError::ActionGone {
            action: ActionId(99)
        })
    ));
}

#[test]
fn cancel_before_the_write_skips_it() {
    logs();
    let server = gateway_server();
    let id = device(5);
    let target = server.add_target(id.as_str());
    let ddi = gateway(&server);
    push_flashline_deployment(&target, 30);
    let action = ddi.poll(&id).unwrap().deployment.unwrap().action;
    let mut written = 0;

    // Still open: the write goes ahead.
    let wrote = write_if_still_wanted(&ddi, &id, &action, || written += 1).unwrap();
    assert_eq!((wrote, written), (Some(()), 1));

    // hawkBit cancels the action (a rollout `stop`, or an operator).
    target.cancel_action("30");
    let polls_before = target.poll_hits();
    assert!(!ddi.still_wanted(&id, &action).unwrap());
    let wrote = write_if_still_wanted(&ddi, &id, &action, || written += 1).unwrap();
    assert_eq!((wrote, written), (None, 1), "no write after the cancel");
    assert_eq!(
        target.poll_hits(),
        polls_before + 2,
        "each check polled once"
    );

    let poll = ddi.poll(&id).unwrap();
    assert_eq!(poll.cancel, Some(ActionId(30)));
    let ack = target.expect_cancel_feedback(
        "30",
        MockExecution::Closed,
        Finished::Success,
        vec![CANCEL_ACCEPTED],
    );
    ddi.ack_cancel(&id, &ActionId(30)).unwrap();
    assert_eq!(ack.calls(), 1);

    // An action the poll does not offer (withdrawn, or another one) is not wanted either.
    assert!(!ddi.still_wanted(&id, &ActionId(31)).unwrap());
}

#[test]
fn one_gateway_serves_many_targets() {
    logs();
    const N: u32 = 8;
    let server = gateway_server();
    let ddi = gateway(&server);
    let ids: Vec<TargetId> = (100..100 + N).map(device).collect();
    let targets: Vec<Target> = ids
        .iter()
        .map(|id| server.add_target(id.as_str()))
        .collect();
    for (n, target) in targets.iter().enumerate() {
        push_flashline_deployment(target, 100 + n as u64);
    }

    let mut closed = Vec::new();
    for (n, (id, target)) in ids.iter().zip(&targets).enumerate() {
        let action = 100 + n as u64;
        let deployment = ddi.poll(id).unwrap().deployment.unwrap();
        assert_eq!(deployment, expected_deployment(action));
        let (finished, outcome) = if n % 3 == 2 {
            (Finished::Failure, Outcome::Failure)
        } else {
            (Finished::Success, Outcome::Success)
        };
        closed.push(target.expect_deployment_feedback(
            &action.to_string(),
            MockExecution::Closed,
            finished,
            None,
            vec!["done"],
        ));
        let feedback = Feedback::new(Execution::Closed(outcome), vec!["done".into()]);
        ddi.feedback(id, &ActionId(action), &feedback).unwrap();
    }
    for (target, mock) in targets.iter().zip(&closed) {
        assert_eq!(target.deployment_hits(), 1);
        assert_eq!(mock.calls(), 1);
    }
    // All distinct: one hawkBit target per device.
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), N as usize);

    // The same requests with another tenant's token are not answered.
    let wrong = client(&server, DdiAuth::GatewayToken(Secret::new("KeyOTHER")));
    assert!(wrong.poll(&ids[0]).is_err());
}

#[test]
fn target_token_for_a_single_device() {
    logs();
    let server = ServerBuilder::default().build();
    let id = device(7);
    let target = server.add_target(id.as_str());
    let own = client(
        &server,
        DdiAuth::TargetToken(Secret::new(format!("Key{id}"))),
    );
    push_flashline_deployment(&target, 40);
    assert_eq!(
        own.poll(&id).unwrap().deployment,
        Some(expected_deployment(40))
    );

    let other = client(&server, DdiAuth::TargetToken(Secret::new("KeyOTHER")));
    assert!(other.poll(&id).is_err());
    assert_eq!(target.deployment_hits(), 1);
}

/// A loopback HTTP server that answers each request (one per connection) as `answer` says.
struct Scripted {
    url: Url,
    stop: Arc<AtomicBool>,
}

/// What the scripted server does with one request.
enum Answer {
    /// Raw bytes: status line, headers and body.
    Raw(Vec<u8>),
    /// Accept and never answer (until the server is dropped).
    Hang,
}

impl Scripted {
    fn start(answer: impl Fn(&str) -> Answer + Send + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let request = read_request(&mut stream);
                        match answer(&request) {
                            Answer::Raw(bytes) => {
                                let _ = stream.write_all(&bytes);
                            }
                            Answer::Hang => held.push(stream),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Scripted { url, stop }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The request head (and any body up to 64 KiB), as text.
fn read_request(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0; 4096];
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") && bytes.len() < 65536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn http(status: &str, body: &str) -> Answer {
    Answer::Raw(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn scripted_client(server: &Scripted, token: &str, timeout: Duration) -> HawkbitDdi {
    HawkbitDdi::with_auth(
        server.url.clone(),
        "DEFAULT",
        DdiAuth::GatewayToken(Secret::new(token)),
        timeout,
    )
    .unwrap()
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

/// Every log line of this test binary, at every level: installed as the global subscriber
/// by the first test, before any test reaches a log call (a subscriber set for one thread
/// only can miss callsites another test registered first).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_token_appears_in_no_log_error_or_debug_output() {
    logs();
    const TOKEN: &str = "3nkswAZhX81oDtktq0FF9Pn0Tc0UGXPW";
    // A server that echoes the request (Authorization header included) in its error body.
    let echo = Scripted::start(|request| {
        let status = if request.contains("/deploymentBase/") {
            "401 Unauthorized"
        } else {
            "500 Internal Server Error"
        };
        http(status, &format!("{{\"echo\": {:?}}}", request))
    });
    let id = device(8);
    let (poll_err, feedback_err, ddi_debug) = {
        let ddi = scripted_client(&echo, TOKEN, Duration::from_secs(5));
        let poll_err = ddi.poll(&id).unwrap_err();
        let feedback_err = ddi
            .feedback(
                &id,
                &ActionId(1),
                &Feedback::new(Execution::Proceeding, vec![]),
            )
            .unwrap_err();
        (poll_err, feedback_err, format!("{ddi:?}"))
    };
    let logs = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();

    match &poll_err {
        DdiError::Status {
            status: 500, body, ..
        } => {
            assert!(
                body.contains("GatewayToken [redacted]"),
                "the echo arrived scrubbed: {body}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        feedback_err,
        DdiError::ActionGone { .. } | DdiError::Unauthorized { status: 401, .. }
    ));
    assert!(
        logs.contains("DDI request"),
        "the calls were logged: {logs}"
    );
    for (what, text) in [
        ("poll error", poll_err.to_string()),
        ("poll error debug", format!("{poll_err:?}")),
        ("feedback error", format!("{feedback_err} {feedback_err:?}")),
        ("client debug", ddi_debug),
        ("logs", logs),
    ] {
        assert!(!text.contains(TOKEN), "{what} shows the token: {text}");
    }
}

#[test]
fn hostile_answers_are_bounded_specific_errors() {
    logs();
    let id = device(9);
    let poll_path = format!("/DEFAULT/controller/v1/{id}");
    let deployment = |action: &str, size: &str| {
        format!(
            r#"{{"id":"{action}","deployment":{{"update":"forced","chunks":[{{"part":"f","version":"1","name":"m",
            "artifacts":[{{"filename":"p.flp","size":{size},"hashes":{{"sha256":"{SHA256}"}}}}]}}]}}}}"#
        )
    };
    let poll_to = |action: &str| {
        format!(
            r#"{{"config":{{"polling":{{"sleep":"00:00:30"}}}},"_links":{{"deploymentBase":{{"href":"http://elsewhere.example/DEFAULT/controller/v1/x/deploymentBase/{action}?c=1"}}}}}}"#
        )
    };
    // (what the poll answers, what deploymentBase answers, the error expected)
    type Check = fn(&DdiError) -> bool;
    let cases: Vec<(Answer, Option<String>, Check)> = vec![
        // a declared length far beyond the poll's limit
        (
            Answer::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n{".to_vec()),
            None,
            |e| matches!(e, DdiError::TooLarge { limit: 65536, .. }),
        ),
        // no declared length, a body that goes on past the limit
        (
            Answer::Raw({
                let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                raw.extend(std::iter::repeat_n(b' ', 200_000));
                raw
            }),
            None,
            |e| matches!(e, DdiError::TooLarge { .. }),
        ),
        (http("200 OK", "{\"config\":{}}"), None, |e| {
            matches!(e, DdiError::Decode { .. })
        }),
        (
            http("200 OK", r#"{"config":{"polling":{"sleep":"forever"}}}"#),
            None,
            |e| matches!(e, DdiError::Decode { detail, .. } if detail.contains("HH:MM:SS")),
        ),
        (http("200 OK", &poll_to("-1")), None, |e| {
            matches!(e, DdiError::Decode { .. })
        }),
        (
            http("200 OK", &poll_to("7")),
            Some(deployment("8", "1")),
            |e| matches!(e, DdiError::Decode { detail, .. } if detail.contains("action 8")),
        ),
        (
            http("200 OK", &poll_to("7")),
            Some(deployment("7", "1e30")),
            |e| matches!(e, DdiError::Decode { .. }),
        ),
        (
            http("200 OK", &poll_to("7")),
            Some(deployment("7", "-5")),
            |e| matches!(e, DdiError::Decode { .. }),
        ),
        (http("429 Too Many Requests", ""), None, |e| {
            matches!(e, DdiError::TooManyRequests { .. })
        }),
        (http("403 Forbidden", ""), None, |e| {
            matches!(e, DdiError::Unauthorized { status: 403, .. })
        }),
        (Answer::Hang, None, |e| {
            matches!(e, DdiError::Timeout { .. })
        }),
    ];
    for (n, (poll, deployment, expected)) in cases.into_iter().enumerate() {
        let poll = Mutex::new(Some(poll));
        let poll_path = poll_path.clone();
        let server = Scripted::start(move |request| {
            if request.starts_with(&format!("GET {poll_path} ")) {
                poll.lock()
                    .unwrap()
                    .take()
                    .unwrap_or_else(|| http("500 Internal Server Error", ""))
            } else if request.contains("/deploymentBase/7 ") {
                deployment
                    .clone()
                    .map_or_else(|| http("404 Not Found", ""), |d| http("200 OK", &d))
            } else {
                http("404 Not Found", "")
            }
        });
        let ddi = scripted_client(&server, "token", Duration::from_millis(800));
        let started = Instant::now();
        let err = ddi.poll(&id).unwrap_err();
        assert!(expected(&err), "case {n}: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "case {n} took {:?}",
            started.elapsed()
        );
    }
}
