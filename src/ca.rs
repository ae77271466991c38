//! devserve's local certificate authority (`devserve ca …`): created once per user, trusted by
//! the user's browsers on request, and able to vouch for local names only.
//!
//! Contract:
//! - It lives in devserve's data folder, `$XDG_DATA_HOME/devserve/`, else `~/.local/share/devserve/`
//!   (folder 0700): `ca.pem` (the certificate, 0644) and `ca-key.pem` (its key, 0600, written
//!   with `O_EXCL`, never following a symlink), and `names`, the names given at its creation.
//! - Its certificate is valid for 10 years and carries X.509 name constraints (RFC 5280
//!   §4.2.1.10): DNS `localhost` (which covers every `*.localhost`), the loopback ranges
//!   (127.0.0.0/8, ::1/128) and the private ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
//!   100.64.0.0/10, fc00::/7, fe80::/10), plus the names given to `devserve ca create --name`. A
//!   certificate it signs for any other name fails verification in every client that checks name
//!   constraints (rustls/webpki, NSS, BoringSSL, OpenSSL 1.1+, Apple's): a stolen key cannot sign
//!   for a public domain, unlike mkcert's unconstrained CA.
//! - [`LocalCa::leaf`] signs, in memory, a short-lived certificate (30 days) for the names a run
//!   serves; its key never touches the disk.
//! - `install` trusts it for the current user where that needs no root: the NSS database
//!   `~/.pki/nssdb` that Chromium and Firefox read on Linux, through `certutil`; for the system
//!   store it prints the commands instead of running `sudo`. `uninstall` removes it from there.
//!   Keys and certificates are made with rcgen on ring; nothing is hand-written.

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The nickname of the CA in an NSS database.
pub const NSS_NICKNAME: &str = "devserve local CA";
/// How long the CA is valid.
const CA_DAYS: i64 = 3650;
/// How long a leaf signed for a run is valid.
const LEAF_DAYS: i64 = 30;
/// The ranges every devserve CA may vouch for, besides the DNS name `localhost`.
const LOCAL_RANGES: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
];

/// Why the CA could not be made, read, used or installed. One line each.
#[derive(Debug)]
pub enum CaError {
    /// Neither `XDG_DATA_HOME` nor `HOME` is set.
    NoDataDir,
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// `devserve ca create` when one exists already (without `--force`).
    Exists {
        path: PathBuf,
    },
    /// rcgen refused (a bad `--name`, say).
    Certificate(String),
    /// `certutil` is missing or failed.
    Certutil(String),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::NoDataDir => {
                f.write_str("neither XDG_DATA_HOME nor HOME is set: no place for devserve's local CA")
            }
            CaError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            CaError::Exists { path } => write!(
                f,
                "a local CA exists already at {}; `devserve ca create --force` replaces it (trust the new one again)",
                path.display()
            ),
            CaError::Certificate(text) => write!(f, "cannot make the certificate: {text}"),
            CaError::Certutil(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for CaError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CaError + '_ {
    move |error| CaError::Io { path: path.to_path_buf(), error }
}

fn cert_error(error: rcgen::Error) -> CaError {
    CaError::Certificate(error.to_string())
}

/// devserve's data folder: `$XDG_DATA_HOME/devserve`, else `$HOME/.local/share/devserve`.
pub fn data_dir() -> Result<PathBuf, CaError> {
    let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
    let home =
        || std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share"));
    xdg.filter(|p| p.is_absolute()).or_else(home).map(|base| base.join("devserve")).ok_or(CaError::NoDataDir)
}

/// The CA: its certificate (PEM) and its key, as read from or written to `dir`.
pub struct LocalCa {
    pub cert_path: PathBuf,
    cert_pem: String,
    key: KeyPair,
    /// The names given to `devserve ca create --name` (kept beside it in `names`, a line each).
    names: Vec<String>,
}

impl LocalCa {
    /// The CA in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<LocalCa>, CaError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let cert_pem = match std::fs::read_to_string(&cert_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&cert_path)(e)),
        };
        let key_pem = std::fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_error)?;
        let names = std::fs::read_to_string(dir.join("names")).unwrap_or_default();
        let names = names.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        Ok(Some(LocalCa { cert_path, cert_pem, key, names }))
    }

    /// Makes a new CA in `dir` (0700), constrained to the local names plus `names` (DNS names or
    /// IP ranges such as `dev.test`, `192.0.2.0/24`). An existing one is kept unless `force`.
    pub fn create(dir: &Path, names: &[String], force: bool) -> Result<LocalCa, CaError> {
        let cert_path = dir.join("ca.pem");
        if !force && cert_path.exists() {
            return Err(CaError::Exists { path: cert_path });
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error(dir))?;
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("devserve local CA ({})", user_and_host()));
        name.push(DnType::OrganizationName, "devserve development CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        params.name_constraints =
            Some(NameConstraints { permitted_subtrees: permitted(names)?, excluded_subtrees: Vec::new() });
        let cert = params.self_signed(&key).map_err(cert_error)?;
        let key_path = dir.join("ca-key.pem");
        write_private(&key_path, key.serialize_pem().as_bytes(), force)?;
        std::fs::write(&cert_path, cert.pem()).map_err(io_error(&cert_path))?;
        let names_path = dir.join("names");
        let listed: String = names.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&names_path, listed).map_err(io_error(&names_path))?;
        Ok(LocalCa { cert_path, cert_pem: cert.pem(), key, names: names.to_vec() })
    }

    /// The CA in `dir`, made on first use.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, CaError> {
        match LocalCa::load(dir)? {
            Some(ca) => Ok(ca),
            None => LocalCa::create(dir, &[], false),
        }
    }

    /// The CA's certificate.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CaError> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| CaError::Certificate(format!("{e:?}")))
    }

    /// A certificate for `dns` names and `ips`, valid for 30 days, signed by the CA, with its
    /// private key (in memory only): the chain a TLS server presents.
    pub fn leaf(
        &self,
        dns: &[String],
        ips: &[IpAddr],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(cert_error)?;
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        let mut names = Vec::new();
        for name in dns {
            names.push(SanType::DnsName(name.clone().try_into().map_err(cert_error)?));
        }
        names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names = names;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, dns.first().cloned().unwrap_or_else(|| "localhost".into()));
        params.distinguished_name = subject;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(LEAF_DAYS);
        let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der()?], key))
    }
}

/// What a run over TLS serves with: the leaf for the names the CA permits among `dns` and `ips`
/// (a name outside its constraints would make clients refuse the whole certificate), as a rustls
/// server configuration offering `h2` then `http/1.1`. Returns it with the names it covers.
pub fn server_config(
    ca: &LocalCa,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<(std::sync::Arc<rustls::ServerConfig>, Vec<String>), CaError> {
    let constraints = permitted(&ca.names)?;
    let dns: Vec<String> = dns.iter().filter(|name| permits_dns(&constraints, name)).cloned().collect();
    let ips: Vec<IpAddr> = ips.iter().filter(|ip| permits_ip(&constraints, **ip)).copied().collect();
    let (chain, key) = ca.leaf(&dns, &ips)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| CaError::Certificate(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut covered = dns;
    covered.extend(ips.iter().map(ToString::to_string));
    Ok((std::sync::Arc::new(config), covered))
}

/// The names a run's certificate is asked for: `localhost`, 127.0.0.1, ::1, the front door's own
/// address (`proxy_host`, when it is one address) and the allowed hosts (`.x` brings `x` and
/// `*.x` when `x` has two labels or more). No `*.localhost`: a wildcard over a single label is
/// refused by webpki (a rustls client would reject the whole certificate) and ignored by OpenSSL
/// and Chromium.
pub fn run_names(proxy_host: &str, allowed_hosts: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = vec!["localhost".to_owned()];
    for host in allowed_hosts {
        match host.strip_prefix('.') {
            Some(base) if base.contains('.') => dns.extend([base.to_owned(), format!("*.{base}")]),
            Some(base) => dns.push(base.to_owned()),
            None if host.parse::<IpAddr>().is_err() && host != "all" => dns.push(host.clone()),
            None => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    dns.retain(|name| seen.insert(name.clone()));
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    ips.extend(proxy_host.parse::<IpAddr>().ok().filter(|ip| !ip.is_unspecified() && !ips.contains(ip)));
    (dns, ips)
}

/// Whether a DNS name (`*.x` for a wildcard) is within a permitted DNS subtree.
fn permits_dns(subtrees: &[GeneralSubtree], name: &str) -> bool {
    let name = name.trim_start_matches("*.").to_ascii_lowercase();
    subtrees.iter().any(|subtree| match subtree {
        GeneralSubtree::DnsName(base) => {
            let base = base.trim_start_matches('.').to_ascii_lowercase();
            name == base || name.ends_with(&format!(".{base}"))
        }
        _ => false,
    })
}

/// Whether an address is within a permitted IP range.
fn permits_ip(subtrees: &[GeneralSubtree], ip: IpAddr) -> bool {
    subtrees.iter().any(|subtree| match (subtree, ip) {
        (GeneralSubtree::IpAddress(CidrSubnet::V4(net, mask)), IpAddr::V4(ip)) => {
            ip.octets().iter().zip(net).zip(mask).all(|((a, n), m)| a & m == n & m)
        }
        (GeneralSubtree::IpAddress(CidrSubnet::V6(net, mask)), IpAddr::V6(ip)) => {
            ip.octets().iter().zip(net).zip(mask).all(|((a, n), m)| a & m == n & m)
        }
        _ => false,
    })
}

/// The permitted subtrees: `localhost`, the local ranges, and `extra` (a DNS name or a CIDR range).
fn permitted(extra: &[String]) -> Result<Vec<GeneralSubtree>, CaError> {
    let mut subtrees = vec![GeneralSubtree::DnsName("localhost".into())];
    for range in LOCAL_RANGES {
        let subnet: CidrSubnet =
            range.parse().map_err(|()| CaError::Certificate(format!("bad range {range}")))?;
        subtrees.push(GeneralSubtree::IpAddress(subnet));
    }
    for name in extra {
        let name = name.trim().trim_start_matches('.');
        if name.contains('/') {
            let subnet: CidrSubnet = name.parse().map_err(|()| {
                CaError::Certificate(format!("`{name}` is not an IP range (e.g. 192.0.2.0/24)"))
            })?;
            subtrees.push(GeneralSubtree::IpAddress(subnet));
        } else if name.is_empty() || name.contains(['*', ' ']) {
            return Err(CaError::Certificate(format!("`{name}` is not a DNS name (e.g. dev.test)")));
        } else {
            subtrees.push(GeneralSubtree::DnsName(name.to_ascii_lowercase()));
        }
    }
    Ok(subtrees)
}

/// `user@host`, to tell one person's CA from another's in a trust store.
fn user_and_host() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{user}@{host}")
}

/// Writes a private file: 0600, never through a symlink; an existing one only with `replace`.
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), CaError> {
    if replace {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path)(e)),
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))
}

/// The NSS database Chromium and Firefox read on Linux: `~/.pki/nssdb`.
pub fn nss_db() -> Result<PathBuf, CaError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".pki/nssdb"))
        .ok_or(CaError::NoDataDir)
}

/// Runs `certutil ARGS`; its stderr is the error.
fn certutil(args: &[&str]) -> Result<String, CaError> {
    let output = std::process::Command::new("certutil").args(args).output().map_err(|e| {
        CaError::Certutil(format!(
            "cannot run certutil ({e}): install it (Debian/Ubuntu: `sudo apt install libnss3-tools`, Fedora: \
             `sudo dnf install nss-tools`), or trust the CA with the system commands below"
        ))
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        Err(CaError::Certutil(format!("certutil {} failed: {text}", args.first().copied().unwrap_or(""))))
    }
}

/// Trusts `cert` in the user's NSS database (made if missing). Returns the database's path.
pub fn install_nss(cert: &Path) -> Result<PathBuf, CaError> {
    let db = nss_db()?;
    let spec = format!("sql:{}", db.display());
    if !db.join("cert9.db").exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&db).map_err(io_error(&db))?;
        certutil(&["-N", "-d", &spec, "--empty-password"])?;
    }
    // A CA made again (`--force`) replaces the one trusted before under the same nickname.
    let _ = certutil(&["-D", "-d", &spec, "-n", NSS_NICKNAME]);
    let cert = cert.display().to_string();
    certutil(&["-A", "-d", &spec, "-t", "C,,", "-n", NSS_NICKNAME, "-i", &cert])?;
    Ok(db)
}

/// Whether the user's NSS database trusts a certificate under devserve's nickname.
pub fn nss_trusts() -> bool {
    nss_db().is_ok_and(|db| {
        db.join("cert9.db").exists()
            && certutil(&["-L", "-d", &format!("sql:{}", db.display()), "-n", NSS_NICKNAME]).is_ok()
    })
}

/// Removes devserve's CA from the user's NSS database; false when it was not there.
pub fn uninstall_nss() -> Result<bool, CaError> {
    let db = nss_db()?;
    if !nss_trusts() {
        return Ok(false);
    }
    certutil(&["-D", "-d", &format!("sql:{}", db.display()), "-n", NSS_NICKNAME])?;
    Ok(true)
}

/// The commands that trust `cert` system-wide (they need root: devserve prints, never runs them).
pub fn system_commands(cert: &Path) -> Vec<String> {
    let cert = cert.display();
    vec![
        format!(
            "Debian/Ubuntu: sudo cp {cert} /usr/local/share/ca-certificates/devserve.crt && sudo update-ca-certificates"
        ),
        format!("Fedora/RHEL:   sudo trust anchor --store {cert}"),
        format!(
            "macOS:         sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {cert}"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("devserve-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn verify(ca: &LocalCa, chain: &[CertificateDer<'static>], name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().expect("ca der")).expect("root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let server = ServerName::try_from(name.to_owned()).expect("name");
        verifier.verify_server_cert(&chain[0], &chain[1..], &server, &[], UnixTime::now()).map(|_| ())
    }

    #[test]
    fn the_ca_vouches_for_local_names_only() {
        let dir = temp("constraints");
        let ca = LocalCa::create(&dir, &["dev.test".into()], false).expect("create");
        let ips = ["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")];
        let names: Vec<String> =
            ["localhost", "app.localhost", "dev.test", "*.dev.test"].map(String::from).to_vec();
        let (chain, _) = ca.leaf(&names, &ips).expect("leaf");
        for name in ["localhost", "app.localhost", "dev.test", "a.dev.test", "127.0.0.1"] {
            verify(&ca, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // The same key signing for a public name: the constraint holds in webpki's verification.
        let (public, _) = ca.leaf(&["example.com".into()], &[]).expect("leaf");
        let refused = verify(&ca, &public, "example.com").expect_err("example.com must not verify");
        assert!(format!("{refused:?}").contains("NameConstraintViolation"), "{refused:?}");
        let (public_ip, _) = ca.leaf(&[], &["8.8.8.8".parse().expect("ip")]).expect("leaf");
        assert!(verify(&ca, &public_ip, "8.8.8.8").is_err(), "a public address is refused too");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rustls_client_verifies_the_certificate_a_run_serves() {
        let dir = temp("run-names");
        let ca = LocalCa::create(&dir, &[], false).expect("create");
        let allowed = [".localhost", "app.localhost", ".dev.test"].map(String::from);
        let (dns, ips) = run_names("127.0.0.1", &allowed);
        assert!(!dns.iter().any(|n| n == "*.localhost"), "{dns:?}");
        // As `server_config` does: only what the CA may vouch for (`dev.test` is not).
        let permitted = permitted(&ca.names).expect("subtrees");
        let dns: Vec<String> = dns.into_iter().filter(|n| permits_dns(&permitted, n)).collect();
        assert_eq!(dns, ["localhost", "app.localhost"]);
        let (chain, _) = ca.leaf(&dns, &ips).expect("leaf");
        for name in ["localhost", "app.localhost", "127.0.0.1"] {
            verify(&ca, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_key_is_private_and_create_keeps_an_existing_ca() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp("files");
        let ca = LocalCa::create(&dir, &[], false).expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
        assert!(matches!(LocalCa::create(&dir, &[], false), Err(CaError::Exists { .. })));
        let again = LocalCa::load_or_create(&dir).expect("load");
        assert_eq!(again.cert_pem, ca.cert_pem, "loaded, not made again");
        let replaced = LocalCa::create(&dir, &[], true).expect("force");
        assert_ne!(replaced.cert_pem, ca.cert_pem);
        assert!(matches!(LocalCa::create(&dir, &["bad name".into()], true), Err(CaError::Certificate(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
