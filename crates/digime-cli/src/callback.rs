//! The way back from the browser: a loopback listener at the callback address, or,
//! for a callback the CLI cannot listen on, the URL pasted by the user.
//!
//! The listener answers every request: the callback path with the right `state` ends
//! the wait (the browser is told it may close the tab); a wrong `state` is answered
//! 400 and the wait goes on, so a stray or hostile request to the port cannot end the
//! authorization; any other path is 404. Requests are read with a 5 s deadline and an
//! 8 KiB limit, one at a time.

use crate::Out;
use crate::exit::Failure;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Where the redirect will come.
pub struct Waiter {
    callback: String,
    listener: Option<TcpListener>,
    path: String,
}

fn loopback(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    let host = match host {
        "127.0.0.1" | "localhost" => "127.0.0.1",
        "[::1]" => "::1",
        _ => return None,
    };
    let path = path.split('?').next().unwrap_or("/");
    Some((
        host.to_owned(),
        port,
        if path.is_empty() { "/" } else { path }.to_owned(),
    ))
}

impl Waiter {
    /// Listens at `callback` when it is an `http` loopback address (port 0: any free
    /// port, put into the callback); otherwise the user will paste the URL.
    pub fn bind(callback: &str) -> Result<Waiter, Failure> {
        let Some((host, port, path)) = loopback(callback) else {
            return Ok(Waiter {
                callback: callback.to_owned(),
                listener: None,
                path: String::new(),
            });
        };
        let listener = TcpListener::bind((host.as_str(), port))
            .map_err(|e| Failure::local(format!("cannot listen at {callback}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Failure::local(e.to_string()))?;
        let callback = if port == 0 {
            let shown = if bound.is_ipv6() {
                format!("[{}]", bound.ip())
            } else {
                bound.ip().to_string()
            };
            format!("http://{shown}:{}{path}", bound.port())
        } else {
            callback.to_owned()
        };
        Ok(Waiter {
            callback,
            listener: Some(listener),
            path,
        })
    }

    /// The callback URL to authorize with.
    pub fn callback(&self) -> &str {
        &self.callback
    }

    /// Shows `url` (and opens it when asked), then waits for the redirect; returns
    /// the URL the browser was sent back to.
    pub fn wait(
        &self,
        url: &str,
        state: &str,
        args: &crate::CallbackArgs,
        out: &Out,
    ) -> Result<String, Failure> {
        // On stderr: with --json, stdout holds only the answer.
        eprintln!("Open this URL in a browser to authorize:\n\n  {url}\n");
        if !args.no_open {
            open_browser(url);
        }
        let Some(listener) = &self.listener else {
            eprintln!("Then paste the URL the browser was sent back to:");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Failure::local(e.to_string()))?;
            return Ok(line.trim().to_owned());
        };
        if !out.json {
            eprintln!("Waiting for the browser at {} …", self.callback);
        }
        let deadline = Instant::now() + Duration::from_secs(args.wait);
        listener
            .set_nonblocking(true)
            .map_err(|e| Failure::local(e.to_string()))?;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Some(redirect) = self.answer(stream, state) {
                        return Ok(redirect);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(Failure::callback(format!(
                            "the browser did not come back to {} within {} s",
                            self.callback, args.wait
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(Failure::local(format!("callback listener: {e}"))),
            }
        }
    }

    /// Answers one request; the callback URL when it is the awaited redirect.
    fn answer(&self, mut stream: TcpStream, state: &str) -> Option<String> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut limited = BufReader::new((&stream).take(8192));
        loop {
            let mut line = Vec::new();
            match limited.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line == b"\r\n" || line == b"\n" => break,
                Ok(_) => head.extend_from_slice(&line),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        let (status, page, found) = if path != self.path {
            ("404 Not Found", "Not the digi.me callback.", None)
        } else {
            let url = format!(
                "{}{}",
                self.callback.split('?').next().unwrap_or(&self.callback),
                &target[path.len()..]
            );
            if !is_ours(&url, state) {
                // Not this authorization's answer (or a forged one): keep waiting.
                (
                    "400 Bad Request",
                    "This answer is not for the authorization the digime command started (its state differs). The command is still waiting.",
                    None,
                )
            } else if digime_protocol::parse_callback(&url).is_ok() {
                (
                    "200 OK",
                    "digi.me authorization complete: you can close this tab and go back to the terminal.",
                    Some(url),
                )
            } else {
                // Denied, or another error: the command reports it.
                (
                    "200 OK",
                    "digi.me authorization did not complete: see the terminal.",
                    Some(url),
                )
            }
        };
        let body =
            format!("<!doctype html><meta charset=utf-8><title>digime</title><p>{page}</p>\n");
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.flush();
        found
    }
}

/// Whether a request to the callback path answers this authorization: a callback the
/// core parses (a code, or an error such as a denial) whose `state` is ours, compared
/// as the core compares it. Anything else is a stray or forged request.
fn is_ours(url: &str, state: &str) -> bool {
    match digime_protocol::parse_callback(url) {
        Ok(callback) => callback.verify_state(state).is_ok(),
        Err(digime_protocol::CallbackError::Failed {
            state: Some(echoed),
            ..
        }) => digime_crypto::constant_time_eq(echoed.as_bytes(), state.as_bytes()),
        Err(_) => false,
    }
}

/// Opens `url` in the user's browser, when one is at hand: `$BROWSER`, else the
/// platform's opener (on Linux only with a display). Failing to open is not an error:
/// the URL is printed.
fn open_browser(url: &str) {
    let command = if let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        Some(std::process::Command::new(browser))
    } else if cfg!(target_os = "macos") {
        Some(std::process::Command::new("open"))
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        Some(c)
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(std::process::Command::new("xdg-open"))
    } else {
        None
    };
    if let Some(mut command) = command {
        let _ = command
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_loopback_callbacks_are_listened_on() {
        assert_eq!(
            loopback("http://127.0.0.1:8080/cb?x=1"),
            Some(("127.0.0.1".into(), 8080, "/cb".into()))
        );
        assert_eq!(
            loopback("http://localhost:0"),
            Some(("127.0.0.1".into(), 0, "/".into()))
        );
        assert_eq!(
            loopback("http://[::1]:9/r"),
            Some(("::1".into(), 9, "/r".into()))
        );
        for other in [
            "https://127.0.0.1:8080/cb",
            "http://example.com/cb",
            "http://127.0.0.1.evil.com/cb",
            "http://127.0.0.1:x/cb",
            "com.app://cb",
        ] {
            assert_eq!(loopback(other), None, "{other}");
        }
    }

    /// Sends `target` to the waiter's listener and reads the answer's status line.
    fn hit(port: u16, target: &str) -> String {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(conn, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or("").to_owned()
    }

    #[test]
    fn only_this_authorizations_answer_ends_the_wait() {
        let waiter = Waiter::bind("http://127.0.0.1:0/cb").unwrap();
        let port: u16 = (waiter.callback().rsplit(':').next().unwrap())
            .trim_end_matches("/cb")
            .parse()
            .unwrap();
        let browser = std::thread::spawn(move || {
            [
                // Another path, a wrong state, no state, a denial with a wrong state,
                // a malformed answer with the right state: all answered, none ends it.
                hit(port, "/other?code=c&state=a%20b"),
                hit(port, "/cb?success=true&code=c&state=zz"),
                hit(port, "/cb?success=true&code=c"),
                hit(port, "/cb?success=false&errorCode=USER_CANCEL&state=zz"),
                hit(port, "/cb?success=maybe&state=a%20b"),
                // The awaited one: the state percent-decoded.
                hit(port, "/cb?success=true&code=c&state=a%20b"),
            ]
        });
        let args = crate::CallbackArgs {
            callback: waiter.callback().to_owned(),
            no_open: true,
            wait: 30,
        };
        let url = waiter
            .wait("http://x/", "a b", &args, &crate::Out { json: true })
            .unwrap();
        let statuses = browser.join().unwrap();
        assert_eq!(
            statuses.iter().map(|s| &s[9..12]).collect::<Vec<_>>(),
            ["404", "400", "400", "400", "400", "200"],
            "{statuses:?}"
        );
        assert_eq!(
            url,
            format!("http://127.0.0.1:{port}/cb?success=true&code=c&state=a%20b")
        );
    }
}
