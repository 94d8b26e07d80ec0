//! A real HTTP server that receives webhooks, as a partner's or an integrator's would:
//! it records every request, can fail a number of times first (or always), and checks
//! signatures the way a receiver should, with its own HMAC.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Request {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub answered: u16,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks `Consento-Signature: t=…,v1=…` against the secret: HMAC-SHA256 of
    /// `"<t>.<body>"`, and `t` within five minutes of now.
    pub fn signature_verifies(&self, secret: &str) -> bool {
        let Some(header) = self.headers.get("consento-signature") else {
            return false;
        };
        let mut timestamp = None;
        let mut signature = None;
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
                Some(("v1", value)) => signature = Some(value.to_owned()),
                _ => {}
            }
        }
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return false;
        };
        if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&self.body);
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        expected == signature
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Requests to answer 500 before answering 200.
    fail_first: usize,
    always_fail: bool,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// A receiver that answers 500 to its first `fail_first` requests, then 200.
    pub fn start(fail_first: usize) -> Self {
        Self::with(State { fail_first, ..State::default() })
    }

    /// A receiver that answers 500 until [`Receiver::recover`].
    pub fn failing() -> Self {
        Self::with(State { always_fail: true, ..State::default() })
    }

    fn with(state: State) -> Self {
        let state = Arc::new(Mutex::new(state));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let shared = state.clone();
        let server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new().app_data(web::PayloadConfig::new(1 << 20)).default_service(web::to(
                move |req: HttpRequest, body: web::Bytes| {
                    let shared = shared.clone();
                    async move {
                        let mut state = shared.lock().unwrap();
                        let fail = state.always_fail || state.requests.len() < state.fail_first;
                        let answered = if fail { 500 } else { 200 };
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("").to_owned()))
                            .collect();
                        state.requests.push(Request { headers, body: body.to_vec(), answered });
                        if fail {
                            HttpResponse::InternalServerError().body("down")
                        } else {
                            HttpResponse::Ok().finish()
                        }
                    }
                },
            ))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, state, server: handle }
    }

    pub fn recover(&self) {
        self.state.lock().unwrap().always_fail = false;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests answered 200.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.answered == 200).collect()
    }

    /// Waits until `count` requests arrived (in all), and answers them.
    pub async fn wait_for(&self, count: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            assert!(Instant::now() < deadline, "the receiver got {} requests, not {count}", requests.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `count` requests were accepted.
    pub async fn wait_for_accepted(&self, count: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let accepted = self.accepted();
            if accepted.len() >= count {
                return accepted;
            }
            assert!(Instant::now() < deadline, "the receiver accepted {} requests, not {count}", accepted.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}
