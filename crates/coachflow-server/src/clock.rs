//! The service's clock, injected everywhere time is read, so tests can move time.

use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where the service reads the time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// How often one who waits for a time on this clock looks at it again: `None` for a
    /// clock that moves only as real time passes (a sleep of the difference wakes on time);
    /// a clock that can be moved by hand is looked at this often, so that moving it past a
    /// due time wakes its sleepers as the passing of time would.
    fn looks_every(&self) -> Option<Duration> {
        None
    }
}

/// How often a waiter looks at a clock that can be moved by hand.
const MOVED_CLOCK_LOOKS: Duration = Duration::from_millis(5);

/// Sleeps until `clock` reads `due` or later, or (in real time) for `longest`, whichever
/// comes first, but never less than `shortest`. Without `due`, sleeps for `longest`.
pub async fn sleep_until(clock: &dyn Clock, due: Option<DateTime<Utc>>, shortest: Duration, longest: Duration) {
    let start = tokio::time::Instant::now();
    loop {
        let elapsed = start.elapsed();
        let Some(left) = longest.checked_sub(elapsed).filter(|left| !left.is_zero()) else {
            return;
        };
        let due_in = due.map(|due| (due - clock.now()).to_std().unwrap_or(Duration::ZERO));
        if elapsed >= shortest && due_in.is_some_and(|due_in| due_in.is_zero()) {
            return;
        }
        let wait = [due_in, clock.looks_every()]
            .into_iter()
            .flatten()
            .fold(left, Duration::min)
            .max(shortest.saturating_sub(elapsed))
            .min(left);
        tokio::time::sleep(wait).await;
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A testing aid: the time is whatever RFC 3339 timestamp the file holds, read at every
/// call, so a black-box test moves the real binary's time by rewriting the file (in place,
/// or by renaming another file over it). Without a readable timestamp in the file, the
/// machine's time is used.
///
/// Every call looks the path up and reads the file's bytes again, but it keeps the file it
/// last opened and the time it last parsed: a call costs a `stat` and a `pread`, and opens
/// and parses only when the path names another file or the bytes changed. (Opening, reading
/// and parsing at every call was 6 % of the server's work in a timer storm, in every
/// benchmark figure.)
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    last: Mutex<Option<Arc<LastRead>>>,
}

/// The file a [`FileClock`] last opened and what it held then.
#[derive(Debug)]
struct LastRead {
    file: Arc<File>,
    /// The file's device and inode: the path still names it while they match.
    id: (u64, u64),
    bytes: Vec<u8>,
    at: Option<DateTime<Utc>>,
}

/// A timestamp's file is read this far; a longer one is read whole.
const CLOCK_BYTES: usize = 256;

impl FileClock {
    pub fn new(path: PathBuf) -> FileClock {
        FileClock {
            path,
            last: Mutex::new(None),
        }
    }

    /// The time the file holds now; `None` without a readable timestamp.
    fn read(&self) -> Option<DateTime<Utc>> {
        let named = std::fs::metadata(&self.path).ok()?;
        let id = (named.dev(), named.ino());
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(last) = last.filter(|last| last.id == id) else {
            return self.keep(Self::open(&self.path)?);
        };
        let mut bytes = [0; CLOCK_BYTES];
        let length = last.file.read_at(&mut bytes, 0).ok()?;
        let bytes = &bytes[..length];
        if bytes == last.bytes.as_slice() {
            return last.at;
        }
        if length == CLOCK_BYTES {
            return self.keep(Self::open(&self.path)?);
        }
        self.keep(LastRead {
            file: Arc::clone(&last.file),
            id,
            bytes: bytes.to_vec(),
            at: parse(bytes),
        })
    }

    /// Keeps `read` for the next call; its time.
    fn keep(&self, read: LastRead) -> Option<DateTime<Utc>> {
        let at = read.at;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(read));
        at
    }

    /// Opens the file and reads it whole.
    fn open(path: &Path) -> Option<LastRead> {
        let mut file = File::open(path).ok()?;
        let opened = file.metadata().ok()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        Some(LastRead {
            file: Arc::new(file),
            id: (opened.dev(), opened.ino()),
            at: parse(&bytes),
            bytes,
        })
    }
}

/// The RFC 3339 timestamp `bytes` hold, blanks around it allowed.
fn parse(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(bytes).ok()?;
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        self.read().unwrap_or_else(Utc::now)
    }

    fn looks_every(&self) -> Option<Duration> {
        Some(MOVED_CLOCK_LOOKS)
    }
}

/// A clock tests set by hand.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: std::sync::Mutex::new(now),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn looks_every(&self) -> Option<Duration> {
        Some(MOVED_CLOCK_LOOKS)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{DateTime, TimeZone, Utc};

    use super::{Clock, FileClock, ManualClock, sleep_until};

    /// A directory of the test's own, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("coachflow-clock-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, day, 9, 0, 0).unwrap()
    }

    fn text(day: u32) -> String {
        at(day).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    #[test]
    fn every_call_sees_the_file_as_it_is_now() {
        let dir = Dir::new("rewrites");
        let path = dir.0.join("clock");
        let clock = FileClock::new(path.clone());
        std::fs::write(&path, text(1)).unwrap();
        assert_eq!(clock.now(), at(1));
        assert_eq!(clock.now(), at(1), "unchanged bytes, the same time");
        // Rewritten in place, the same length, at once.
        std::fs::write(&path, text(2)).unwrap();
        assert_eq!(clock.now(), at(2));
        // Another file renamed over it.
        let staging = dir.0.join("clock.next");
        std::fs::write(&staging, format!("  {}\n", text(3))).unwrap();
        std::fs::rename(&staging, &path).unwrap();
        assert_eq!(clock.now(), at(3));
        std::fs::write(&path, text(4)).unwrap();
        assert_eq!(clock.now(), at(4), "the renamed file, rewritten in place");
    }

    #[test]
    fn without_a_timestamp_the_machine_time_is_used() {
        let dir = Dir::new("fallback");
        let path = dir.0.join("clock");
        let clock = FileClock::new(path.clone());
        let machine = |clock: &FileClock| (clock.now() - Utc::now()).num_seconds().abs() < 60;
        assert!(machine(&clock), "no file");
        std::fs::write(&path, text(1)).unwrap();
        assert_eq!(clock.now(), at(1));
        std::fs::write(&path, "not a time").unwrap();
        assert!(machine(&clock), "no timestamp");
        std::fs::write(&path, format!("{}{}", text(5), " ".repeat(400))).unwrap();
        assert_eq!(clock.now(), at(5), "a file longer than one read");
        std::fs::remove_file(&path).unwrap();
        assert!(machine(&clock), "the file removed");
    }

    /// Sleeps on `clock` in a task of its own; the (paused) real time it woke at.
    fn sleeper(
        clock: &Arc<ManualClock>,
        due: Option<DateTime<Utc>>,
        shortest: Duration,
        longest: Duration,
    ) -> tokio::task::JoinHandle<tokio::time::Instant> {
        let clock = Arc::clone(clock);
        tokio::spawn(async move {
            sleep_until(clock.as_ref(), due, shortest, longest).await;
            tokio::time::Instant::now()
        })
    }

    const LONGEST: Duration = Duration::from_secs(120);

    #[tokio::test(start_paused = true)]
    async fn moving_the_clock_past_the_due_time_wakes_the_sleeper() {
        let clock = Arc::new(ManualClock::new(at(1)));
        let start = tokio::time::Instant::now();
        let sleeper = sleeper(&clock, Some(at(2)), Duration::ZERO, LONGEST);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!sleeper.is_finished(), "due a day later on the clock, 30 s have passed");
        clock.set(at(2));
        let woke = sleeper.await.unwrap();
        assert!(
            woke - start < Duration::from_secs(31),
            "woke {:?} after it began",
            woke - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_sleep_ends_after_the_longest_and_not_before_the_shortest() {
        let clock = Arc::new(ManualClock::new(at(1)));
        let start = tokio::time::Instant::now();
        let woke = sleeper(&clock, None, Duration::ZERO, LONGEST).await.unwrap();
        assert_eq!(woke - start, LONGEST, "nothing due: the longest sleep");
        let start = tokio::time::Instant::now();
        let woke = sleeper(&clock, Some(at(2)), Duration::ZERO, LONGEST).await.unwrap();
        assert_eq!(woke - start, LONGEST, "due later than the longest sleep");
        let start = tokio::time::Instant::now();
        let shortest = Duration::from_millis(10);
        let woke = sleeper(&clock, Some(at(1)), shortest, LONGEST).await.unwrap();
        assert_eq!(woke - start, shortest, "already due: the shortest sleep");
    }
}
