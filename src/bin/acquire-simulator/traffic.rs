//! The simulated day: its load, the random numbers, the chats and the bodies they send.

use serde_json::json;

/// The load of the day at `hour` (0..24, UTC), from about 0.04 at night to 1 at the morning peak.
pub(crate) fn daily_load(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64| (-(hour - centre).powi(2) / (2.0 * width * width)).exp();
    (0.04 + bump(10.5, 1.4) + 0.85 * bump(15.0, 1.8) + 0.3 * bump(20.0, 1.2)).min(1.0)
}

/// SplitMix64: small, fast and good enough for traffic shapes (not for anything secret).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Exponential with mean `mean`.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub(crate) fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with mean `mean` (Knuth; means here are small).
    pub(crate) fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit && k < 1000 {
            k += 1;
            p *= self.uniform();
        }
        k
    }
}

// ---------------------------------------------------------------------------------------------
// The vendor's wire shape.

/// `YYYY-MM-DD HH:MM:SS` (the vendor's `date_*` format, no time zone) of a UNIX time.
pub(crate) fn vendor_date(unix_seconds: f64) -> String {
    let secs = unix_seconds.max(0.0) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One chat's identity and timeline, in simulated UNIX seconds.
pub(crate) struct Chat {
    pub(crate) id: u64,
    pub(crate) department: String,
    pub(crate) started: f64,
    /// Agent id and role; `None` when the visitor left before an answer.
    pub(crate) agent: Option<(String, &'static str)>,
    /// Simulated seconds the visitor waited (until the accept or until leaving).
    pub(crate) wait: f64,
    /// Simulated seconds from the accept (or the leaving) to the close.
    pub(crate) duration: f64,
    pub(crate) ahead: usize,
}

impl Chat {
    pub(crate) fn start_body(&self) -> String {
        let date = vendor_date(self.started);
        json!({
            "data": {
                "id": self.id.to_string(),
                "details": {"meta": "_by:app"},
                "status": "pending",
                "date_created": date,
                "date_updated": date,
                "department_id": self.department,
            },
            "event": "CHAT_ON_START",
        })
        .to_string()
    }

    pub(crate) fn accept_body(&self) -> String {
        let (agent, _) = self
            .agent
            .as_ref()
            .expect("only answered chats are accepted");
        json!({
            "id": self.id.to_string(),
            "status": "active",
            "chat_wait_time": "null",
            "user": {
                "id": agent,
                "status": "active",
                "type": "agent",
                "virtual": "false",
                "owner": "true",
                "state": "online",
            },
            "event": "CHAT_ON_ACCEPT",
        })
        .to_string()
    }

    /// The fields of the chat thread that the message and close events share, with `fields`.
    pub(crate) fn thread_body(
        &self,
        account_id: &str,
        fields: serde_json::Value,
    ) -> serde_json::Value {
        let mut body = json!({
            "id": self.id.to_string(),
            "thread_id": "-1",
            "account_id": account_id,
            "session_id": self.visitor_id(),
            "room_id": format!("{:016x}", self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            "visitor_id": self.visitor_id(),
        });
        if let (Some(body), serde_json::Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        body
    }

    pub(crate) fn message_body(&self, account_id: &str, at: f64, from_agent: bool) -> String {
        let user = match (&self.agent, from_agent) {
            (Some((agent, _)), true) => json!({"id": agent, "type": "agent", "state": "online"}),
            _ => json!({"id": self.visitor_id(), "type": "visitor"}),
        };
        let message = json!({"type": "message", "user": user}).to_string();
        self.thread_body(
            account_id,
            json!({
                "message": message,
                "recording": "[]",
                "chat_wait_time": "null",
                "chat_duration": "null",
                "date_created": vendor_date(self.started),
                "date_updated": vendor_date(at),
                "date_picked": vendor_date(self.started + self.wait),
                "event": "CHAT_ON_MESSAGE",
            }),
        )
        .to_string()
    }

    pub(crate) fn close_body(&self, account_id: &str, without_id: bool) -> String {
        let closed = self.started + self.wait + self.duration;
        let (wait, users, by) = match &self.agent {
            Some((agent, role)) => (
                format!("{}", self.wait.round()),
                json!({"agent": {"id": agent, "role": role}, "visitor": {"meta": "_by:app"}}),
                agent.clone(),
            ),
            None => (
                "null".to_owned(),
                json!({"visitor": {"meta": "_by:app"}}),
                "visitor".to_owned(),
            ),
        };
        let mut body = self.thread_body(
            account_id,
            json!({
                "type": "text",
                "comments": "[]",
                "chat_notes": "{}",
                "chat_wait_time": wait,
                "chat_duration": format!("{}", self.duration.round()),
                "status": "closed",
                "translate_to": "en",
                "account_translate_language": "",
                "translate_form_show": "false",
                "date_created": vendor_date(self.started),
                "date_updated": vendor_date(closed),
                "department_id": self.department,
                "past_comment": "[]",
                "past_chat": "[]",
                "translation_mode": "false",
                "users": users.to_string(),
                "by": by,
                "ahead_chats": self.ahead.to_string(),
                "ahead_time": format!("{}", (self.ahead as f64 * 30.0).round()),
                "date_picked": vendor_date(self.started + self.wait),
                "event": "CHAT_ON_CLOSE",
            }),
        );
        if without_id {
            body.as_object_mut().expect("an object").remove("id");
        }
        body.to_string()
    }

    pub(crate) fn visitor_id(&self) -> String {
        (self.id % 1_000_000_007).to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// A small blocking HTTP/1.1 client with keep-alive (the exporter speaks HTTP/1.1).
