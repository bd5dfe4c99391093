//! A real DNS server on loopback (hickory-server, over UDP), authoritative for `lookout.test.`,
//! whose address records a test sets and changes while the gateway resolves them.

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use tokio::net::UdpSocket;

const ZONE: &str = "lookout.test.";

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<Zone>,
    server: Option<Server<Catalog>>,
}

impl TestDns {
    /// Starts the server on `127.0.0.1:0` with an empty zone: every name is NXDOMAIN.
    pub async fn start() -> TestDns {
        let origin = Name::from_str(ZONE).expect("zone name");
        let mut zone = Zone::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("ns.lookout.test.").expect("name"),
            Name::from_str("admin.lookout.test.").expect("name"),
            1,
            60,
            60,
            60,
            0,
        );
        zone.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1);
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind the DNS server");
        let addr = socket.local_addr().expect("local address");
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        TestDns {
            addr,
            zone,
            server: Some(server),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `label.lookout.test.`, the name a test's upstream discovers.
    pub fn name(label: &str) -> String {
        format!("{label}.{ZONE}")
    }

    /// Sets `name`'s A records; none removes the name, which then answers NXDOMAIN.
    pub async fn set(&self, name: &str, addresses: &[Ipv4Addr]) {
        let records = addresses.iter().map(|&ip| RData::A(A(ip)));
        self.replace(name, RecordType::A, records.collect()).await;
    }

    /// Sets `name`'s SRV records, each `(priority, weight, port, target)`; none removes the name.
    pub async fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let records = records.iter().map(|&(priority, weight, port, target)| {
            let target = Name::from_str(target).expect("a target name");
            RData::SRV(SRV::new(priority, weight, port, target))
        });
        self.replace(name, RecordType::SRV, records.collect()).await;
    }

    /// Replaces `name`'s records of `kind` (time to live 0, so no resolver keeps them).
    async fn replace(&self, name: &str, kind: RecordType, records: Vec<RData>) {
        let owner = Name::from_str(name).expect("a DNS name");
        let key = RrKey::new(LowerName::new(&owner), kind);
        let mut zone = self.zone.records_mut().await;
        if records.is_empty() {
            zone.remove(&key);
            return;
        }
        let mut set = RecordSet::new(owner.clone(), kind, 1);
        for data in records {
            set.insert(Record::from_rdata(owner.clone(), 0, data), 1);
        }
        zone.insert(key, Arc::new(set));
    }

    /// Stops answering: resolutions fail from now on.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.shutdown_gracefully().await;
        }
    }
}
