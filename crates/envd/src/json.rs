//! Protobuf's JSON mapping for the fields that need more than serde's defaults: bytes as base64, 64-bit
//! integers as strings, enums by name, timestamps as RFC 3339. E2B's SDKs speak Connect's JSON codec.

use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

pub mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        // Protobuf JSON accepts either base64 alphabet, padded or not.
        let t = text.trim_end_matches('=');
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .map_err(D::Error::custom)
    }
}

/// A 64-bit integer: written as a string, read from a string or a number.
pub mod int_str {
    use super::*;

    pub fn serialize<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s.parse().map_err(D::Error::custom),
            serde_json::Value::Number(n) => n.to_string().parse().map_err(D::Error::custom),
            serde_json::Value::Null => "0".parse().map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected an integer, got {other}"
            ))),
        }
    }
}

pub mod opt_int_str {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => s.parse().map(Some).map_err(D::Error::custom),
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| D::Error::custom("expected an unsigned integer")),
            other => Err(D::Error::custom(format!(
                "expected an integer, got {other}"
            ))),
        }
    }
}

/// An enum field (an `i32` in prost) by its protobuf names, read from a name or a number.
pub fn enum_ser<S: Serializer>(v: i32, names: &[(i32, &str)], s: S) -> Result<S::Ok, S::Error> {
    match names.iter().find(|(n, _)| *n == v) {
        Some((_, name)) => s.serialize_str(name),
        None => s.serialize_i32(v),
    }
}

pub fn enum_de<'de, D: Deserializer<'de>>(d: D, names: &[(i32, &str)]) -> Result<i32, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => names
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(n, _)| *n)
            .ok_or_else(|| D::Error::custom(format!("unknown enum value {s}"))),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(|n| n as i32)
            .ok_or_else(|| D::Error::custom("expected an enum number")),
        serde_json::Value::Null => Ok(0),
        other => Err(D::Error::custom(format!("expected an enum, got {other}"))),
    }
}

/// Defines a module that maps one enum's numbers to its protobuf names.
#[macro_export]
macro_rules! json_enum {
    ($module:ident, [$(($n:expr, $name:expr)),* $(,)?]) => {
        pub mod $module {
            const NAMES: &[(i32, &str)] = &[$(($n, $name)),*];
            pub fn serialize<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                $crate::json::enum_ser(*v, NAMES, s)
            }
            pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                $crate::json::enum_de(d, NAMES)
            }
        }
    };
}

/// `google.protobuf.Timestamp` as RFC 3339 (UTC, `Z`).
pub mod timestamp {
    use super::*;
    use crate::Timestamp;

    /// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    fn civil(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (m as i64 + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn serialize<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        let Some(t) = v else {
            return s.serialize_none();
        };
        let (days, secs) = (t.seconds.div_euclid(86_400), t.seconds.rem_euclid(86_400));
        let (y, m, d) = civil(days);
        let text = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            t.nanos.max(0)
        );
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bad = || D::Error::custom(format!("not an RFC 3339 UTC time: {text}"));
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let (date, time) = text.split_once('T').ok_or_else(bad)?;
        let mut dp = date.splitn(3, '-');
        let (y, mo, da) = (
            num(dp.next().ok_or_else(bad)?)?,
            num(dp.next().ok_or_else(bad)?)?,
            num(dp.next().ok_or_else(bad)?)?,
        );
        let time = time.trim_end_matches('Z');
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut tp = hms.splitn(3, ':');
        let (h, mi, se) = (
            num(tp.next().ok_or_else(bad)?)?,
            num(tp.next().ok_or_else(bad)?)?,
            num(tp.next().ok_or_else(bad)?)?,
        );
        let nanos = format!("{frac:0<9}")[..9]
            .parse::<i32>()
            .map_err(|_| bad())?;
        let seconds = days_from_civil(y, mo as u32, da as u32) * 86_400 + h * 3600 + mi * 60 + se;
        Ok(Some(Timestamp { seconds, nanos }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_round_trip() {
            for (secs, text) in [
                (0, "1970-01-01T00:00:00.000000000Z"),
                (951_782_400, "2000-02-29T00:00:00.000000000Z"),
                (1_764_460_800 + 3661, "2025-11-30T01:01:01.000000000Z"),
            ] {
                let v = serde_json::to_value(Wrap(Some(Timestamp {
                    seconds: secs,
                    nanos: 0,
                })))
                .unwrap();
                assert_eq!(v, serde_json::json!(text));
                let back: Wrap = serde_json::from_value(v).unwrap();
                assert_eq!(back.0.unwrap().seconds, secs);
            }
        }

        #[derive(serde::Serialize, serde::Deserialize)]
        struct Wrap(#[serde(with = "super")] Option<Timestamp>);
    }
}
