//! A real Redis (Debian's `redis-server`) on a free loopback port, in memory only, killed when
//! dropped. `.ci/run` installs it and sets `LOOKOUT_REQUIRE_REDIS`, so there a missing server
//! fails the test; elsewhere the test is skipped with a note.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TestRedis {
    pub addr: SocketAddr,
    server: Option<Child>,
}

impl TestRedis {
    /// Starts a server, or returns `None` (the test then skips) when `redis-server` is not
    /// installed and CI's `LOOKOUT_REQUIRE_REDIS` is not set.
    pub async fn start() -> Option<TestRedis> {
        // The OS picks a free port; it is released for Redis to take a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = TestRedis {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            server: None,
        };
        match redis.launch().await {
            Ok(()) => Some(redis),
            Err(error) if std::env::var_os("LOOKOUT_REQUIRE_REDIS").is_none() => {
                eprintln!("skipped: no Redis ({error}); install Debian's redis-server to run this test");
                None
            }
            Err(error) => panic!("Redis is required here: {error}"),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server: Redis is unreachable until [`TestRedis::restart`].
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts a new, empty server on the same port.
    pub async fn restart(&mut self) {
        self.launch().await.expect("Redis restarts");
    }

    async fn launch(&mut self) -> Result<(), String> {
        let server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.addr).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop();
        Err(format!(
            "redis-server did not answer on {} within 10 s",
            self.addr
        ))
    }
}

async fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").await.is_ok()
        && stream.read_exact(&mut reply).await.is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
