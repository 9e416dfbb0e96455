//! `HOOKLINE_NATS_URL` as a list of servers. A cluster is reached through
//! any of its nodes, so the setting takes several URLs, comma separated;
//! the client connects to one of them and learns the others (and nodes
//! added later) from the servers themselves. One login serves them all: a
//! client presents the same credentials to whichever node it reaches, so
//! URLs that disagree are refused instead of silently using one of them.

use std::fmt;

use async_nats::ServerAddr;

/// The servers of `HOOKLINE_NATS_URL` with the login they share.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsServers {
    /// Each URL without its `user:password@`, in the order given.
    urls: Vec<String>,
    credentials: Option<Credentials>,
}

/// A NATS user and password; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"********").finish()
    }
}

impl fmt::Debug for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServers").field("urls", &self.urls).field("credentials", &self.credentials).finish()
    }
}

/// Why `HOOKLINE_NATS_URL` is refused. Messages show URLs without passwords.
#[derive(Debug, thiserror::Error)]
pub enum NatsUrlError {
    #[error("HOOKLINE_NATS_URL: is empty; give one NATS URL or several, comma separated")]
    Empty,
    #[error("HOOKLINE_NATS_URL: entry {position} is empty (two commas in a row, or a trailing comma)")]
    EmptyEntry { position: usize },
    #[error("HOOKLINE_NATS_URL: entry {position} ({url}) is not a NATS server URL")]
    Invalid {
        position: usize,
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "HOOKLINE_NATS_URL: every URL of the list must log in with the same user and password \
         (or none); entry {position} ({url}) differs from the first"
    )]
    CredentialsDiffer { position: usize, url: String },
}

impl NatsServers {
    /// Parse `nats://[user:password@]host:port[,...]`; a URL without a scheme
    /// is `nats://`, one without a port uses 4222.
    pub fn parse(setting: &str) -> Result<Self, NatsUrlError> {
        if setting.trim().is_empty() {
            return Err(NatsUrlError::Empty);
        }
        let mut urls = Vec::new();
        let mut first_credentials = None;
        for (i, entry) in setting.split(',').enumerate() {
            let position = i + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(NatsUrlError::EmptyEntry { position });
            }
            let (url, credentials) = split_credentials(entry);
            url.parse::<ServerAddr>().map_err(|source| NatsUrlError::Invalid { position, url: url.clone(), source })?;
            match &first_credentials {
                None => first_credentials = Some(credentials),
                Some(first) if *first != credentials => {
                    return Err(NatsUrlError::CredentialsDiffer { position, url });
                }
                Some(_) => {}
            }
            urls.push(url);
        }
        Ok(Self { urls, credentials: first_credentials.flatten() })
    }

    /// The URLs without credentials, for logs and errors.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The addresses for the client (checked when parsed).
    pub fn addrs(&self) -> Vec<ServerAddr> {
        self.urls.iter().map(|u| u.parse().expect("checked in NatsServers::parse")).collect()
    }
}

impl fmt::Display for NatsServers {
    /// The list without passwords, as a `HOOKLINE_NATS_URL` value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.urls.join(","))
    }
}

/// `nats://user:pw@host:4222` → (`nats://host:4222`, Some(user, pw)).
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return (format!("{scheme}://{rest}"), None) };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (format!("{scheme}://{host}"), Some(Credentials { user: user.to_owned(), password: password.to_owned() }))
}

/// `HOOKLINE_NATS_URL` (or any URL list) with every password replaced by
/// `********`, for `hookline config show` and logs.
pub fn mask_url_list(setting: &str) -> String {
    setting.split(',').map(mask_one).collect::<Vec<_>>().join(",")
}

fn mask_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_stays_one_server() {
        let s = NatsServers::parse("nats://127.0.0.1:4222").unwrap();
        assert_eq!(s.urls(), ["nats://127.0.0.1:4222"]);
        assert_eq!(s.credentials(), None);
        assert_eq!(s.addrs().len(), 1);
    }

    #[test]
    fn a_comma_separated_list_becomes_several_servers_in_order() {
        let s = NatsServers::parse("nats://a:4222, nats://b:4223 ,c:4224").unwrap();
        assert_eq!(s.urls(), ["nats://a:4222", "nats://b:4223", "nats://c:4224"]);
        let ports: Vec<u16> = s.addrs().iter().map(|a| a.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        assert_eq!(s.to_string(), "nats://a:4222,nats://b:4223,nats://c:4224");
    }

    #[test]
    fn credentials_shared_by_every_url_are_taken_once_and_kept_out_of_the_urls() {
        let s = NatsServers::parse("nats://hookline:s3cret@a:4222,nats://hookline:s3cret@b:4222").unwrap();
        assert_eq!(s.urls(), ["nats://a:4222", "nats://b:4222"]);
        let c = s.credentials().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("hookline", "s3cret"));
        assert!(!format!("{s:?} {s}").contains("s3cret"));
    }

    #[test]
    fn credentials_on_some_urls_only_are_refused_without_the_password() {
        let e = NatsServers::parse("nats://hookline:s3cret@a:4222,nats://b:4222").unwrap_err();
        assert!(matches!(e, NatsUrlError::CredentialsDiffer { position: 2, .. }), "{e:?}");
        let e = NatsServers::parse("nats://u:pw-alpha@a:4222,nats://u:pw-beta@b:4222").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.starts_with("HOOKLINE_NATS_URL:"), "{text}");
        assert!(!text.contains("pw-alpha") && !text.contains("pw-beta"), "{text}");
    }

    #[test]
    fn bad_entries_are_refused_naming_the_setting_and_the_position() {
        assert!(matches!(NatsServers::parse(" "), Err(NatsUrlError::Empty)));
        assert!(matches!(NatsServers::parse("nats://a:1,,nats://b:2"), Err(NatsUrlError::EmptyEntry { position: 2 })));
        let e = NatsServers::parse("nats://a:4222,nats://b:notaport").unwrap_err();
        assert!(matches!(e, NatsUrlError::Invalid { position: 2, .. }), "{e:?}");
        assert!(e.to_string().contains("HOOKLINE_NATS_URL"));
        let e = NatsServers::parse("http://a:4222").unwrap_err();
        assert!(matches!(e, NatsUrlError::Invalid { position: 1, .. }), "{e:?}");
    }

    #[test]
    fn masking_hides_every_password_of_a_list() {
        assert_eq!(
            mask_url_list("nats://u:p1@a:4222,nats://u:p2@b:4222,nats://c:4222"),
            "nats://u:********@a:4222,nats://u:********@b:4222,nats://c:4222"
        );
        assert_eq!(mask_url_list("postgres://app:s3cret@db/h"), "postgres://app:********@db/h");
        assert_eq!(mask_url_list("postgres://postgres@db/h"), "postgres://postgres@db/h");
    }
}
