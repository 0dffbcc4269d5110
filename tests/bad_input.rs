//! What the internet sends, at the reverse proxy: non-UTF-8 header values, two `Host`
//! headers, absurd sizes, garbage instead of HTTP. Each gets a clear 4xx, the upstream
//! sees none of them, and the next well-formed request is served normally.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::serve::{Server, USER_KEY, Upstream, fixture_config, free_port, temp_dir};

/// Sends raw bytes and returns the whole answer (the connection is closed after it).
fn raw(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
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
    let proxy = free_port();
    let config = dir.join("portcullis.toml");
    let text = fixture_config(false, "invoices:read")
        + &format!(
            "\n[[routes]]\nname = \"invoices\"\npaths = [\"/invoices/**\"]\npolicies = [\"scopes\", \"agent-guard\"]\n\n\
             [server.proxy]\nlisten = \"127.0.0.1:{proxy}\"\nupstream = \"http://{}\"\nmax_request_bytes = 1024\n",
            upstream.addr
        );
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config, &[], &[proxy]);

    let ok = get(proxy, b"");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let served = upstream.seen().len();

    // A header value that is not UTF-8: refused, naming the header, not quoting it.
    let answer = get(proxy, b"x-note: caf\xe9\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("x-note") && answer.contains("bad-request"), "{answer}");

    // Two Host headers: the policy and the upstream could disagree about the target.
    let answer = get(proxy, b"host: evil.test\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Host"), "{answer}");

    // An absurd Content-Length is refused before a byte of the body is read.
    let answer = raw(
        proxy,
        format!("POST /invoices/1 HTTP/1.1\r\nhost: api.test\r\nx-api-key: {USER_KEY}\r\ncontent-length: 999999999999\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A body over the cap, announced honestly.
    let body = vec![b'x'; 2048];
    let mut request =
        format!("POST /invoices/1 HTTP/1.1\r\nhost: api.test\r\nx-api-key: {USER_KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(&body);
    assert!(raw(proxy, &request).starts_with("HTTP/1.1 413"));

    // A 1 MiB header and a flood of headers: the HTTP layer refuses them.
    let huge = format!("x-big: {}\r\n", "a".repeat(1 << 20));
    let answer = get(proxy, huge.as_bytes());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"), "{answer}");
    let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = get(proxy, many.as_bytes());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"), "{answer}");

    // Not HTTP at all.
    let answer = raw(proxy, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");

    assert_eq!(upstream.seen().len(), served, "a malformed request reached the upstream");
    let after = get(proxy, b"");
    assert!(after.starts_with("HTTP/1.1 200"), "the next request is served: {after}");
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
}
