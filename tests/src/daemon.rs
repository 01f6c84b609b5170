//! `weft daemon` driven from a test: started and crashed ([`Daemon`]), and a JSON-RPC 2.0
//! client on its socket ([`Rpc`]).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Home;

pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts `weft daemon` on `home` and waits until its socket answers.
    pub fn start(home: &Home) -> Daemon {
        let daemon = Daemon { child: home.spawn_daemon() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Rpc::connect(&home.dir).is_none_or(|mut rpc| rpc.call("status", json!({})).is_err()) {
            assert!(Instant::now() < deadline, "the daemon's socket never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    /// Starts `weft ARGS` (a `daemon` command with its own options) on `home`, its output
    /// discarded, and waits until its socket answers.
    pub fn start_with(home: &Home, args: &[&str]) -> Daemon {
        let child = home
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting weft daemon");
        let daemon = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Rpc::connect(&home.dir).is_none_or(|mut rpc| rpc.call("status", json!({})).is_err()) {
            assert!(Instant::now() < deadline, "the daemon's socket never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it as a crash would: no chance to remove its socket.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC 2.0 client on the daemon's socket; notifications are kept aside.
pub struct Rpc {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
    next_id: u64,
    /// Notifications that came before an answer, kept for the caller.
    pub notifications: VecDeque<Value>,
}

impl Rpc {
    pub fn connect(home: &Path) -> Option<Rpc> {
        let stream = UnixStream::connect(home.join("weft.sock")).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Some(Rpc {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 1,
            notifications: VecDeque::new(),
        })
    }

    pub fn send_line(&mut self, line: &[u8]) {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    /// The next message that is not a notification.
    pub fn response(&mut self) -> Value {
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "the daemon closed the connection");
            let message: Value = serde_json::from_str(&line).expect("the daemon answers JSON");
            assert_eq!(message["jsonrpc"], "2.0", "{message}");
            if message.get("id").is_some() {
                return message;
            }
            self.notifications.push_back(message);
        }
    }

    /// A call, or the error of a connection that broke before its answer (a daemon killed
    /// mid-call).
    pub fn try_call(&mut self, method: &str, params: Value) -> std::io::Result<Result<Value, Value>> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        let response = loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let message: Value = serde_json::from_str(&line).expect("the daemon answers JSON");
            if message.get("id").is_some() {
                break message;
            }
            self.notifications.push_back(message);
        };
        assert_eq!(response["id"], id, "{response}");
        Ok(match response.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(response["result"].clone()),
        })
    }

    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.try_call(method, params).expect("the daemon closed the connection")
    }

    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params.clone()).unwrap_or_else(|e| panic!("{method} {params} failed: {e}"))
    }

    /// The next event notification, within 30 seconds.
    pub fn event(&mut self) -> Value {
        if let Some(n) = self.notifications.pop_front() {
            return n["params"].clone();
        }
        let mut line = String::new();
        assert!(self.reader.read_line(&mut line).unwrap() > 0, "the daemon closed the connection");
        let message: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(message["method"], "event", "{message}");
        message["params"].clone()
    }
}
