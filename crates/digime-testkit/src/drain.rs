//! A keep-alive HTTP/1.1 server that reads and drops every request body and answers
//! `201` with no body: what a push costs the client alone, with no server work.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// A running drain server; it lives until the process ends.
#[derive(Debug, Clone)]
pub struct Drain {
    /// The API base, `http://ADDR/v1.7/`.
    pub base: String,
}

/// Starts a drain server on `127.0.0.1:0`, a thread per connection.
pub fn start() -> std::io::Result<Drain> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}/v1.7/", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = connection(stream);
            });
        }
    });
    Ok(Drain { base })
}

fn connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut sink = vec![0u8; 1 << 20];
    loop {
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<u64>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = u64::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
                drain(&mut reader, n + 2, &mut sink)?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            drain(&mut reader, n, &mut sink)?;
        }
        writer.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")?;
    }
}

fn drain(reader: &mut impl Read, mut n: u64, buf: &mut [u8]) -> std::io::Result<()> {
    while n > 0 {
        let want = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        let got = reader.read(&mut buf[..want])?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        n -= got as u64;
    }
    Ok(())
}
