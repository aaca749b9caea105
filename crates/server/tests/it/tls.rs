//! HTTPS served by keel-server itself, with keel-agent's HTTP client (`[tls]` of agent.toml) on
//! the other end: certificates made by openssl; devices authenticated by client certificate
//! (CN = controller id, O = tenant); a server certificate from another CA and an expired one,
//! each refused with the reason; the certificate reloaded on SIGHUP.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_agent::config::TlsConfig;
use keel_testkit::pki::{Identity, Pki, EXT_CA};

use crate::common::TestServer;

const EXT_SERVER: &str = "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
     extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n";
const EXT_CLIENT: &str =
    "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n";

struct Certs {
    pki: Pki,
    ca: Identity,
    server: Identity,
}

fn certs() -> Certs {
    let pki = Pki::new();
    let ca = pki.cert("ca").ext(EXT_CA).self_signed();
    let server = pki.cert("server").ext(EXT_SERVER).issued_by(&ca);
    Certs { pki, ca, server }
}

fn client(pki: &Pki, name: &str, subject: &str, ca: &Identity) -> Identity {
    pki.cert(name)
        .subject(subject)
        .ext(EXT_CLIENT)
        .issued_by(ca)
}

/// GET `url` with keel-agent's HTTP client configured by `tls`: the status, or the error text.
async fn get(url: String, tls: TlsConfig) -> Result<u16, String> {
    tokio::task::spawn_blocking(move || {
        let http = keel_agent::source::http_agent(&tls)?;
        match http.get(&url).call() {
            Ok(response) => Ok(response.status().as_u16()),
            Err(ureq::Error::StatusCode(status)) => Ok(status),
            Err(err) => Err(err.to_string()),
        }
    })
    .await
    .unwrap()
}

fn trust(ca: &Identity) -> TlsConfig {
    TlsConfig {
        ca_file: Some(ca.cert.clone()),
        ..Default::default()
    }
}

fn with_client(ca: &Identity, client: &Identity) -> TlsConfig {
    TlsConfig {
        ca_file: Some(ca.cert.clone()),
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_authenticate_by_client_certificate_over_https() {
    let c = certs();
    let (cert, key, client_ca) = (
        c.server.cert.clone(),
        c.server.key.clone(),
        c.ca.cert.clone(),
    );
    let server = TestServer::start_with(move |config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.tls_client_ca = Some(client_ca);
    })
    .await;
    let base = server.base.replacen("http://", "https://", 1);
    let poll = |id: &str| format!("{base}/default/controller/v1/{id}");

    let dev1 = client(&c.pki, "dev-1", "/CN=dev-1/O=default", &c.ca);
    // The certificate names the device and its tenant: authenticated, registered on its poll.
    assert_eq!(get(poll("dev-1"), with_client(&c.ca, &dev1)).await, Ok(200));
    let (admin, target_url) = (
        server.admin.clone(),
        format!("{base}/rest/v1/targets/dev-1"),
    );
    let ca = trust(&c.ca);
    let status = tokio::task::spawn_blocking(move || {
        let http = keel_agent::source::http_agent(&ca).unwrap();
        http.get(&target_url)
            .header("Authorization", format!("Bearer {admin}"))
            .call()
            .map(|r| r.status().as_u16())
    })
    .await
    .unwrap();
    assert_eq!(
        status.unwrap(),
        200,
        "the device registered by its certificate is listed"
    );
    // Another device's URL, another tenant, no certificate at all: refused.
    assert_eq!(get(poll("dev-2"), with_client(&c.ca, &dev1)).await, Ok(401));
    let other_tenant = client(&c.pki, "dev-1-other", "/CN=dev-1/O=other", &c.ca);
    assert_eq!(
        get(poll("dev-1"), with_client(&c.ca, &other_tenant)).await,
        Ok(401)
    );
    assert_eq!(get(poll("dev-1"), trust(&c.ca)).await, Ok(401));

    // A client certificate from a CA the server does not trust: the handshake fails.
    let rogue_ca = c.pki.cert("rogue-ca").ext(EXT_CA).self_signed();
    let rogue = client(&c.pki, "rogue", "/CN=dev-1/O=default", &rogue_ca);
    let err = get(poll("dev-1"), with_client(&c.ca, &rogue))
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("alert"),
        "{err}"
    );

    // The management API over the same HTTPS listener.
    let mgmt_url = format!("{base}/rest/v1/targets");
    assert_eq!(
        get(mgmt_url, trust(&c.ca)).await,
        Ok(401),
        "the management API still wants its token"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_refuses_a_server_certificate_from_another_ca_or_expired() {
    let c = certs();
    let expired = c
        .pki
        .cert("expired")
        .ext(EXT_SERVER)
        .days(0)
        .issued_by(&c.ca);
    for (server_cert, expected) in [
        (&c.server, "UnknownIssuer"),
        (&expired, "certificate expired"),
    ] {
        let (cert, key) = (server_cert.cert.clone(), server_cert.key.clone());
        let server = TestServer::start_with(move |config| {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
        })
        .await;
        let url = format!(
            "{}/default/controller/v1/dev-1",
            server.base.replacen("http://", "https://", 1)
        );
        let trusted = if expected == "UnknownIssuer" {
            // The agent trusts only another CA.
            c.pki.cert("other-ca").ext(EXT_CA).self_signed()
        } else {
            std::thread::sleep(Duration::from_millis(1100)); // past notAfter (= issue time)
            c.ca.clone()
        };
        let err = get(url, trust(&trusted))
            .await
            .expect_err("the agent must refuse the server");
        assert!(
            err.contains(expected),
            "refusal should name {expected}: {err}"
        );
        server.stop().await;
    }
    // Bad [tls] files: the error names the file.
    let missing = TlsConfig {
        ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        ..Default::default()
    };
    let err = keel_agent::source::http_agent(&missing).unwrap_err();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let not_pem = TlsConfig {
        ca_file: Some(c.server.key.clone()),
        ..Default::default()
    };
    let err = keel_agent::source::http_agent(&not_pem).unwrap_err();
    assert!(err.contains("no certificate in it"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_certificate_and_a_broken_one_is_not_taken() {
    let c = certs();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(&c.server.cert, &cert).unwrap();
    std::fs::copy(&c.server.key, &key).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel-server"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--create-default-tenant",
            "--tls-cert",
        ])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = {
        use std::io::BufRead;
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("keel-server listening on ")
                    .map(str::to_string)
            })
            .expect("the listening address on stdout")
    };
    let url = format!("https://{addr}/default/controller/v1/dev-1");
    assert_eq!(get(url.clone(), trust(&c.ca)).await, Ok(401));

    // A renewed certificate from a new CA: taken on SIGHUP.
    let new_ca = c.pki.cert("new-ca").ext(EXT_CA).self_signed();
    let renewed = c.pki.cert("renewed").ext(EXT_SERVER).issued_by(&new_ca);
    std::fs::copy(&renewed.cert, &cert).unwrap();
    std::fs::copy(&renewed.key, &key).unwrap();
    assert!(
        get(url.clone(), trust(&new_ca)).await.is_err(),
        "not before SIGHUP"
    );
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(url.clone(), trust(&new_ca)).await != Ok(401) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not taken after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken key on SIGHUP: the server keeps serving the last good certificate.
    std::fs::write(&key, "not a key").unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(url.clone(), trust(&new_ca)).await, Ok(401));
    assert!(
        child.try_wait().unwrap().is_none(),
        "keel-server exited on a broken reload"
    );
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("TLS certificate and key reloaded"), "{log}");
    assert!(
        log.contains("TLS files not reloaded, the previous ones stay in use"),
        "{log}"
    );
    assert!(
        log.contains("tls.key"),
        "the failed reload names the file: {log}"
    );
}
