//! Time for file systems: the default clock, and calendar dates for FAT and for display.
//!
//! Every [`Clock`](super::Clock) returns nanoseconds since 1970-01-01 UTC. exo has no
//! real-time clock: the default, [`uptime`], is the generic timer's counter since boot added
//! to 1980-01-01 00:00:00 (FAT's first representable date), so both back ends stamp files
//! with the same, honestly fake, date. An app that learns the real time can pass its own
//! clock to the back ends.

/// 1980-01-01 00:00:00 UTC in seconds since the Unix epoch.
pub const FAT_EPOCH_SECS: i64 = 315_532_800;

/// The default clock: 1980-01-01 plus the time since boot (on the host: 1980-01-01).
pub fn uptime() -> i64 {
    FAT_EPOCH_SECS * 1_000_000_000 + since_boot_ns()
}

#[cfg(target_os = "none")]
fn since_boot_ns() -> i64 {
    let t = crate::sys::now();
    let hz = crate::vm::kinfo().counter_hz.max(1);
    ((t as u128 * 1_000_000_000 / hz as u128) as u64).min(i64::MAX as u64 / 2) as i64
}

#[cfg(not(target_os = "none"))]
fn since_boot_ns() -> i64 {
    0
}

/// A calendar date and time (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Seconds since the Unix epoch as a calendar date (proleptic Gregorian).
pub fn to_civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Days to (year, month, day): H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60 }
}

/// A calendar date as seconds since the Unix epoch (fields are not range-checked).
pub fn from_civil(c: Civil) -> i64 {
    let y = c.year - i64::from(c.month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(c.month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(c.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(c.hour) * 3600 + i64::from(c.minute) * 60 + i64::from(c.second)
}

/// A FAT (date, time) pair as nanoseconds since the Unix epoch; `None` if the date is 0 or
/// impossible.
pub fn from_fat(date: u16, time: u16) -> Option<i64> {
    let c = Civil {
        year: 1980 + i64::from(date >> 9),
        month: u32::from(date >> 5 & 15),
        day: u32::from(date & 31),
        hour: u32::from(time >> 11),
        minute: u32::from(time >> 5 & 63),
        second: u32::from(time & 31) * 2,
    };
    if !(1..=12).contains(&c.month) || c.day == 0 || c.hour > 23 || c.minute > 59 || c.second > 59 {
        return None;
    }
    Some(from_civil(c) * 1_000_000_000)
}

/// Nanoseconds since the Unix epoch as FAT's (date, time), clamped to FAT's range
/// (1980-01-01 to 2107-12-31), to 2-second precision.
pub fn to_fat(ns: i64) -> (u16, u16) {
    let c = to_civil(ns.div_euclid(1_000_000_000));
    if c.year < 1980 {
        return (1 << 5 | 1, 0);
    }
    if c.year > 2107 {
        return ((127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29);
    }
    let date = ((c.year - 1980) as u16) << 9 | (c.month as u16) << 5 | c.day as u16;
    let time = (c.hour as u16) << 11 | (c.minute as u16) << 5 | (c.second / 2) as u16;
    (date, time)
}
