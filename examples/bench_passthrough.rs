//! The floor for `scripts/bench-proxy.sh`: a reverse proxy with nothing to decide, on the
//! same transport as `portcullis serve`'s proxy door (tokio's multi-threaded runtime, hyper's
//! HTTP/1.1 server with the same header timeout, hyper-util's pooled client with the same
//! no-delay, connect timeout and pool settings). No gate, no policies, no audit: what is left
//! of the proxy's added latency when the gate costs nothing.
//!
//! `bench_passthrough LISTEN_ADDR http://UPSTREAM` (plaintext upstream only). Build:
//! `cargo build --release --example bench_passthrough`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

type Body = BoxBody<Bytes, hyper::Error>;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench_passthrough LISTEN_ADDR http://UPSTREAM_HOST:PORT");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: Uri = upstream.parse().expect("UPSTREAM is a URL");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(serve(listen, upstream));
}

async fn serve(listen: SocketAddr, upstream: Uri) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(50))
        .pool_max_idle_per_host(64)
        .build(connector);
    let authority = upstream.authority().expect("UPSTREAM has a host").clone();
    let listener = tokio::net::TcpListener::bind(listen).await.expect("cannot listen");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let (client, authority) = (client.clone(), authority.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (client, authority) = (client.clone(), authority.clone());
                async move { Ok::<_, Infallible>(forward(&client, authority, req).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
            let _ = builder.http1_only().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    authority: http::uri::Authority,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
    parts.uri = Uri::builder().scheme("http").authority(authority).path_and_query(path).build().expect("a valid URI");
    parts.headers.remove(HOST);
    if let Ok(response) = client.request(Request::from_parts(parts, body)).await {
        response.map(BodyExt::boxed)
    } else {
        let mut response = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
        *response.status_mut() = http::StatusCode::BAD_GATEWAY;
        response
    }
}
