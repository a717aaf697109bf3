//! `basic_auth_users`: bcrypt checks, bounded, fair between clients, and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::*;
use crate::http::serve::Client;

/// The basic-auth users and the cache of successful verifications.
pub(super) struct BasicAuth {
    pub(super) users: HashMap<String, String>,
    // Unknown users are checked against this real hash (the costliest configured) and refused,
    // so they take as long as known ones.
    pub(super) decoy_hash: String,
    // Keyed with a per-process random key: the cache never holds a plain fast hash of a password.
    pub(super) cache_mac: Hmac<Sha256>,
    pub(super) cache: Mutex<AuthCache>,
    pub(super) bcrypt_gate: Arc<tokio::sync::Semaphore>,
    // One check at a time per client address: the gate's queue holds at most one per client.
    pub(super) lanes: Mutex<HashMap<Client, Arc<tokio::sync::Mutex<()>>>>,
}

/// A client's place in its lane; the lane is forgotten when its last user leaves.
pub(super) struct Lane<'a> {
    lanes: &'a Mutex<HashMap<Client, Arc<tokio::sync::Mutex<()>>>>,
    client: Client,
    pub(super) turn: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Lane<'a> {
    pub(super) fn join(
        lanes: &'a Mutex<HashMap<Client, Arc<tokio::sync::Mutex<()>>>>,
        client: Client,
    ) -> Self {
        let turn = lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(client)
            .or_default()
            .clone();
        Lane {
            lanes,
            client,
            turn,
        }
    }
}

impl Drop for Lane<'_> {
    fn drop(&mut self) {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's handle and this one: nobody else is in the lane.
        if Arc::strong_count(&self.turn) == 2 {
            lanes.remove(&self.client);
        }
    }
}

#[derive(Default)]
pub(super) struct AuthCache {
    pub(super) entries: Vec<[u8; 32]>,
    pub(super) next: usize,
}

pub(super) enum Lookup<'a> {
    Decided(BasicAuthOutcome),
    NeedsBcrypt(&'a BasicAuth, PendingVerify),
}

/// A bcrypt check to run, owning its inputs so it can move to a blocking thread.
pub(super) struct PendingVerify {
    pub(super) key: [u8; 32],
    pub(super) known_user: bool,
    pub(super) hash: String,
    pub(super) password: Vec<u8>,
}

impl PendingVerify {
    /// The cache key when the credentials are valid, `None` otherwise.
    pub(super) fn verify(self) -> Option<[u8; 32]> {
        if self.password.len() > BCRYPT_MAX_PASSWORD {
            return None;
        }
        let matches = bcrypt::verify(&self.password, &self.hash).unwrap_or(false);
        (matches && self.known_user).then_some(self.key)
    }
}

impl BasicAuth {
    pub(super) fn cache_key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut mac = self.cache_mac.clone();
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        mac.update(&(user.len() as u64).to_le_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    pub(super) fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        // Scan every entry without an early exit, so timing says nothing about which one matched.
        let hit = cache
            .entries
            .iter()
            .fold(Choice::from(0), |hit, entry| hit | entry.ct_eq(key));
        hit.into()
    }

    pub(super) fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.entries.len() < AUTH_CACHE_CAPACITY {
            cache.entries.push(key);
        } else {
            let slot = cache.next;
            cache.entries[slot] = key;
            cache.next = (slot + 1) % AUTH_CACHE_CAPACITY;
        }
    }

    pub(super) fn finish(&self, verified: Option<[u8; 32]>) -> BasicAuthOutcome {
        match verified {
            Some(key) => {
                if !self.cached(&key) {
                    self.remember(key);
                }
                BasicAuthOutcome::Allowed
            }
            None => BasicAuthOutcome::Denied,
        }
    }
}

/// User and password of an `Authorization: Basic` header (scheme case-insensitive, RFC 7617).
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = decode_base64(rest.trim_ascii())?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding, as browsers and Prometheus send basic-auth credentials.
pub(super) fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    if input.is_empty() || input.len() % 4 != 0 {
        return None;
    }
    let chunks = input.len() / 4;
    let mut out = Vec::with_capacity(chunks * 3);
    for (i, chunk) in input.chunks_exact(4).enumerate() {
        let mut bits: u32 = 0;
        let mut padding = 0;
        for (j, &c) in chunk.iter().enumerate() {
            let sextet = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                // Padding only at the end of the last group.
                b'=' if i + 1 == chunks && j >= 2 => {
                    padding += 1;
                    0
                }
                _ => return None,
            };
            if padding > 0 && c != b'=' {
                return None;
            }
            bits = bits << 6 | u32::from(sextet);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - padding]);
    }
    Some(out)
}
