//! What the internet sends, at the reverse proxy: non-UTF-8 header values, two `Host`
//! headers, absurd sizes, garbage instead of HTTP. Each gets a clear 4xx, the upstream
//! sees none of them, and the next well-formed request is served normally.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::serve::{Server, USER_KEY, Upstream, fixture_config, temp_dir};

/// How long an answer may take before the test fails (a hang must fail, not pass).
const PATIENCE: Duration = Duration::from_secs(10);

/// Sends raw bytes and returns the whole answer (the connection is closed after it). Fails
/// the test when no answer comes within [`PATIENCE`], or when the connection closes
/// without one: a hang or a silent close is never taken for a refusal.
fn raw(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("write timeout");
    // Sent from another thread: a server that refuses a huge request answers before it has
    // read all of it, and may close the connection while the rest is still being sent.
    let mut writer = stream.try_clone().expect("clone the stream");
    let bytes = bytes.to_vec();
    let sending = std::thread::spawn(move || writer.write_all(&bytes));
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no complete answer within {PATIENCE:?}; so far: {:?}", String::from_utf8_lossy(&answer))
            }
            // A reset after the answer (the server closed with request bytes unread).
            Err(e) => {
                assert!(!answer.is_empty(), "the connection failed ({e}) without an answer");
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    // Whether the rest of a refused request could be sent does not matter.
    let _ = sending.join().expect("the sending thread");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status of an HTTP/1.1 answer; fails the test when `answer` is not one.
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

fn get(port: u16, extra_headers: &[u8]) -> String {
    let mut request =
        format!("GET /invoices/1 HTTP/1.1\r\nhost: api.test\r\nx-api-key: {USER_KEY}\r\nconnection: close\r\n")
            .into_bytes();
    request.extend_from_slice(extra_headers);
    request.extend_from_slice(b"\r\n");
    raw(port, &request)
}

#[test]
fn malformed_requests_get_a_clear_4xx_and_never_reach_the_upstream() {
    common::policies_dir();
    let dir = temp_dir("bad-input");
    let upstream = Upstream::start();
    let config = dir.join("portcullis.toml");
    let text = fixture_config(false, "invoices:read")
        + &format!(
            "\n[[routes]]\nname = \"invoices\"\npaths = [\"/invoices/**\"]\npolicies = [\"scopes\", \"agent-guard\"]\n\n\
             [server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nmax_request_bytes = 1024\n",
            upstream.addr
        );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config, &[]);
    let proxy = server.port("proxy");

    let ok = get(proxy, b"");
    assert_eq!(status(&ok), 200, "{ok}");
    let served = upstream.seen().len();

    // A header value that is not UTF-8: refused, naming the header, not quoting it.
    let answer = get(proxy, b"x-note: caf\xe9\r\n");
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("x-note") && answer.contains("bad-request"), "{answer}");

    // Two Host headers: the policy and the upstream could disagree about the target.
    let answer = get(proxy, b"host: evil.test\r\n");
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("Host"), "{answer}");

    // An absurd Content-Length is refused before a byte of the body is read.
    let answer = raw(
        proxy,
        format!("POST /invoices/1 HTTP/1.1\r\nhost: api.test\r\nx-api-key: {USER_KEY}\r\ncontent-length: 999999999999\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status(&answer), 413, "{answer}");

    // A body over the cap, announced honestly.
    let body = vec![b'x'; 2048];
    let mut request =
        format!("POST /invoices/1 HTTP/1.1\r\nhost: api.test\r\nx-api-key: {USER_KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(&body);
    let answer = raw(proxy, &request);
    assert_eq!(status(&answer), 413, "{answer}");

    // A 1 MiB header and a flood of headers: the HTTP layer refuses them.
    let huge = format!("x-big: {}\r\n", "a".repeat(1 << 20));
    let answer = get(proxy, huge.as_bytes());
    assert!(matches!(status(&answer), 400 | 431), "{answer}");
    let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = get(proxy, many.as_bytes());
    assert!(matches!(status(&answer), 400 | 431), "{answer}");

    // Not HTTP at all.
    let answer = raw(proxy, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    assert_eq!(status(&answer), 400, "{answer}");

    assert_eq!(upstream.seen().len(), served, "a malformed request reached the upstream");
    let after = get(proxy, b"");
    assert_eq!(status(&after), 200, "the next request is served: {after}");
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
}
