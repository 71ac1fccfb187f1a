//! The measured points, their CSV and JSON files, and the cache that makes a run
//! resumable: a point whose key (codec, setting, file, pack) is already in the output
//! folder's `points.json` (or, without it, `points.csv`) is not measured again.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// What was coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Image,
    Audio,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Audio => "audio",
        }
    }

    fn parse(s: &str) -> Result<Kind> {
        match s {
            "image" => Ok(Kind::Image),
            "audio" => Ok(Kind::Audio),
            _ => bail!("unknown kind {s:?}"),
        }
    }
}

/// One file coded with one codec at one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub kind: Kind,
    /// The codec ("JPEG", "ipc").
    pub codec: String,
    /// The RD curve the point belongs to: the codec, or for ipc "ipc effort N".
    pub series: String,
    /// The codec's setting ("q=50", "level=3 effort=0").
    pub setting: String,
    /// The input file's name (with "@crop..." or "@first..." in --quick mode).
    pub file: String,
    /// The model pack id for ipc, empty for the others.
    pub pack: String,
    /// Whole-file size.
    pub bytes: u64,
    /// Bits per pixel (images) or kbit/s (audio).
    pub rate: f64,
    /// dB; infinite for a lossless result.
    pub psnr: f64,
    /// Images: MS-SSIM (absent for images too small for five scales).
    pub ms_ssim: Option<f64>,
    /// Audio: SNR in dB.
    pub snr: Option<f64>,
    /// STOI of audio (bench/src/stoi.rs): a mean correlation, about 0.4 for noise and 1
    /// for the reference itself; None for images and for points
    /// measured before it was added.
    pub stoi: Option<f64>,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// The identity of a point in the cache.
pub type Key = (String, String, String, String);

impl Point {
    pub fn key(&self) -> Key {
        key(&self.codec, &self.setting, &self.file, &self.pack)
    }
}

pub fn key(codec: &str, setting: &str, file: &str, pack: &str) -> Key {
    (
        codec.to_string(),
        setting.to_string(),
        file.to_string(),
        pack.to_string(),
    )
}

/// Every point of the output folder, old and new.
#[derive(Debug, Default)]
pub struct Store {
    pub points: Vec<Point>,
    keys: HashSet<Key>,
}

pub const JSON_NAME: &str = "points.json";
pub const CSV_NAME: &str = "points.csv";

const CSV_HEADER: &str =
    "kind,codec,series,setting,file,pack,bytes,bpp,kbps,psnr,ms_ssim,snr,encode_s,decode_s,stoi";

impl Store {
    /// The points already in `dir` (from `points.json`, else `points.csv`), or none.
    /// A cache that cannot be read is an error rather than silently replaced, so that
    /// hours of measurements are never overwritten by mistake.
    pub fn load(dir: &Path) -> Result<Store> {
        let json_path = dir.join(JSON_NAME);
        let csv_path = dir.join(CSV_NAME);
        let points = if json_path.exists() {
            let text = std::fs::read_to_string(&json_path)
                .with_context(|| format!("cannot read {}", json_path.display()))?;
            from_json(&text).with_context(|| {
                format!(
                    "{} is not a points file of bench rd (move it away or choose another --out)",
                    json_path.display()
                )
            })?
        } else if csv_path.exists() {
            let text = std::fs::read_to_string(&csv_path)
                .with_context(|| format!("cannot read {}", csv_path.display()))?;
            from_csv(&text).with_context(|| {
                format!(
                    "{} is not a points file of bench rd (move it away or choose another --out)",
                    csv_path.display()
                )
            })?
        } else {
            Vec::new()
        };
        let mut store = Store::default();
        for p in points {
            store.insert(p);
        }
        Ok(store)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// Adds a point, replacing one with the same key.
    pub fn insert(&mut self, p: Point) {
        let k = p.key();
        if !self.keys.insert(k.clone()) {
            self.points.retain(|q| q.key() != k);
        }
        self.points.push(p);
    }

    /// Writes `points.json` and `points.csv` into `dir`, each atomically.
    pub fn save(&self, dir: &Path, skipped: &[(String, String)]) -> Result<()> {
        let mut sorted: Vec<&Point> = self.points.iter().collect();
        sorted.sort_by(|a, b| {
            (a.kind.name(), &a.series, &a.file, a.rate.to_bits()).cmp(&(
                b.kind.name(),
                &b.series,
                &b.file,
                b.rate.to_bits(),
            ))
        });
        let text = to_json(&sorted, skipped);
        write_atomic(&dir.join(JSON_NAME), text.as_bytes())?;
        write_atomic(&dir.join(CSV_NAME), to_csv(&sorted).as_bytes())
    }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same folder (so
/// that the rename is atomic), synced, then renamed over `path`. On failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let context = || format!("cannot write {}", path.display());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".tmp-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    // Like any other new file (within the umask), not private to the owner.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut f = builder.tempfile_in(dir).with_context(context)?;
    f.write_all(bytes).with_context(context)?;
    f.as_file().sync_all().with_context(context)?;
    f.persist(path).map_err(|e| e.error).with_context(context)?;
    // Make the rename itself durable; not every file system supports syncing a
    // folder, and the data is already complete, so a failure here is ignored.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A JSON number, or null for a value with no JSON number (infinite PSNR: lossless).
fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn point_json(p: &Point) -> Value {
    let (bpp, kbps) = match p.kind {
        Kind::Image => (num(p.rate), Value::Null),
        Kind::Audio => (Value::Null, num(p.rate)),
    };
    json!({
        "kind": p.kind.name(),
        "codec": p.codec,
        "series": p.series,
        "setting": p.setting,
        "file": p.file,
        "pack": p.pack,
        "bytes": p.bytes,
        "bpp": bpp,
        "kbps": kbps,
        "psnr": num(p.psnr),
        "ms_ssim": p.ms_ssim.map_or(Value::Null, num),
        "snr": p.snr.map_or(Value::Null, num),
        "stoi": p.stoi.map_or(Value::Null, num),
        "encode_s": num(p.encode_s),
        "decode_s": num(p.decode_s),
    })
}

pub fn to_json(points: &[&Point], skipped: &[(String, String)]) -> String {
    let v = json!({
        "note": "psnr null: lossless (infinite); bpp for images, kbps for audio",
        "points": points.iter().map(|p| point_json(p)).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|(c, why)| json!({"codec": c, "reason": why})).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&v).expect("JSON values serialise");
    s.push('\n');
    s
}

pub fn from_json(text: &str) -> Result<Vec<Point>> {
    let v: Value = serde_json::from_str(text)?;
    let list = v
        .get("points")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("no \"points\" list"))?;
    list.iter()
        .enumerate()
        .map(|(i, p)| point_from_json(p).with_context(|| format!("point {i}")))
        .collect()
}

fn point_from_json(v: &Value) -> Result<Point> {
    let s = |k: &str| -> Result<String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no text {k:?}"))
    };
    let f = |k: &str| -> Option<f64> { v.get(k).and_then(Value::as_f64) };
    let kind = Kind::parse(&s("kind")?)?;
    let rate = match kind {
        Kind::Image => f("bpp"),
        Kind::Audio => f("kbps"),
    }
    .ok_or_else(|| anyhow!("no rate"))?;
    Ok(Point {
        kind,
        codec: s("codec")?,
        series: s("series")?,
        setting: s("setting")?,
        file: s("file")?,
        pack: s("pack")?,
        bytes: v
            .get("bytes")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("no bytes"))?,
        rate,
        psnr: f("psnr").unwrap_or(f64::INFINITY),
        ms_ssim: f("ms_ssim"),
        // Audio always has an SNR; null stands for an infinite one (lossless).
        snr: match kind {
            Kind::Image => f("snr"),
            Kind::Audio => Some(f("snr").unwrap_or(f64::INFINITY)),
        },
        stoi: f("stoi"),
        encode_s: f("encode_s").ok_or_else(|| anyhow!("no encode_s"))?,
        decode_s: f("decode_s").ok_or_else(|| anyhow!("no decode_s"))?,
    })
}

/// A CSV field: quoted when it holds a comma, quote or line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `{}` prints the shortest text that reads back to the same f64, so the CSV round
/// trip is exact.
fn fnum(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else if x > 0.0 {
        "inf".into()
    } else if x < 0.0 {
        "-inf".into()
    } else {
        "nan".into()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(fnum).unwrap_or_default()
}

pub fn to_csv(points: &[&Point]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for p in points {
        let (bpp, kbps) = match p.kind {
            Kind::Image => (fnum(p.rate), String::new()),
            Kind::Audio => (String::new(), fnum(p.rate)),
        };
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{bpp},{kbps},{},{},{},{},{},{}",
            p.kind.name(),
            field(&p.codec),
            field(&p.series),
            field(&p.setting),
            field(&p.file),
            field(&p.pack),
            p.bytes,
            fnum(p.psnr),
            opt(p.ms_ssim),
            opt(p.snr),
            fnum(p.encode_s),
            fnum(p.decode_s),
            opt(p.stoi),
        );
    }
    s
}

/// Splits CSV text into records of fields (RFC 4180: quoted fields may hold commas,
/// doubled quotes and line breaks).
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cur.push('"');
                }
                '"' => quoted = false,
                c => cur.push(c),
            }
            continue;
        }
        match c {
            '"' if cur.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut cur)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut cur));
                records.push(std::mem::take(&mut record));
            }
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("a quoted field is not closed");
    }
    if !cur.is_empty() || !record.is_empty() {
        record.push(cur);
        records.push(record);
    }
    Ok(records)
}

pub fn from_csv(text: &str) -> Result<Vec<Point>> {
    let records = parse_csv(text)?;
    let Some((header, rows)) = records.split_first() else {
        return Ok(Vec::new());
    };
    if header.join(",") != CSV_HEADER {
        bail!("unexpected header {:?}", header.join(","));
    }
    rows.iter()
        .enumerate()
        .filter(|(_, r)| !(r.len() == 1 && r[0].is_empty()))
        .map(|(i, r)| point_from_csv(r).with_context(|| format!("row {}", i + 2)))
        .collect()
}

fn point_from_csv(r: &[String]) -> Result<Point> {
    // 15 fields; 14 in files written before STOI was measured.
    if r.len() != 14 && r.len() != 15 {
        bail!("{} fields, expected 15", r.len());
    }
    let f = |i: usize| -> Result<f64> {
        r[i].parse::<f64>()
            .map_err(|_| anyhow!("field {} is {:?}, not a number", i + 1, r[i]))
    };
    let o = |i: usize| -> Result<Option<f64>> {
        if r[i].is_empty() {
            Ok(None)
        } else {
            f(i).map(Some)
        }
    };
    let kind = Kind::parse(&r[0])?;
    Ok(Point {
        kind,
        codec: r[1].clone(),
        series: r[2].clone(),
        setting: r[3].clone(),
        file: r[4].clone(),
        pack: r[5].clone(),
        bytes: r[6]
            .parse()
            .map_err(|_| anyhow!("bytes {:?} is not a count", r[6]))?,
        rate: match kind {
            Kind::Image => f(7)?,
            Kind::Audio => f(8)?,
        },
        psnr: f(9)?,
        ms_ssim: o(10)?,
        snr: o(11)?,
        encode_s: f(12)?,
        decode_s: f(13)?,
        // Files written before STOI was measured have 14 columns.
        stoi: if r.len() > 14 { o(14)? } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Point> {
        vec![
            Point {
                kind: Kind::Image,
                codec: "JPEG".into(),
                series: "JPEG".into(),
                setting: "q=50".into(),
                file: "a, \"quoted\".png".into(),
                pack: String::new(),
                bytes: 1234,
                rate: 0.1 + 0.2,
                psnr: 31.234567890123,
                ms_ssim: Some(0.987654321),
                snr: None,
                stoi: None,
                encode_s: 0.01,
                decode_s: 1e-5,
            },
            Point {
                kind: Kind::Audio,
                codec: "FLAC".into(),
                series: "FLAC".into(),
                setting: "level=8".into(),
                file: "clip.wav@first2s".into(),
                pack: String::new(),
                bytes: 99,
                rate: 123.456,
                psnr: f64::INFINITY,
                ms_ssim: None,
                snr: Some(f64::INFINITY),
                stoi: None,
                encode_s: 0.5,
                decode_s: 0.25,
            },
            Point {
                kind: Kind::Image,
                codec: "ipc".into(),
                series: "ipc effort 0".into(),
                setting: "level=3 effort=0".into(),
                file: "b.png".into(),
                pack: "abcd".into(),
                bytes: 7,
                rate: 2.0 / 3.0,
                psnr: 20.5,
                ms_ssim: None,
                snr: None,
                stoi: None,
                encode_s: 3.0,
                decode_s: 1.0,
            },
        ]
    }

    #[test]
    fn csv_round_trip_is_exact() {
        let pts = sample();
        let refs: Vec<&Point> = pts.iter().collect();
        assert_eq!(from_csv(&to_csv(&refs)).unwrap(), pts);
    }

    #[test]
    fn json_round_trip_is_exact() {
        let pts = sample();
        let refs: Vec<&Point> = pts.iter().collect();
        let back = from_json(&to_json(
            &refs,
            &[("AVIF".into(), "avifenc missing".into())],
        ))
        .unwrap();
        // JSON has no infinity: null stands for the infinite PSNR and SNR of lossless.
        assert_eq!(back, pts);
    }

    #[test]
    fn bad_caches_are_errors_not_panics() {
        assert!(from_json("{").is_err());
        assert!(from_json("{\"points\": [{}]}").is_err());
        assert!(from_json("[]").is_err());
        assert!(from_csv("a,b\n1,2\n").is_err());
        assert!(from_csv(&format!("{CSV_HEADER}\nimage,x\n")).is_err());
        assert!(from_csv(&format!("{CSV_HEADER}\n\"open")).is_err());
        assert_eq!(from_csv("").unwrap(), vec![]);
    }

    #[test]
    fn insert_replaces_the_same_key() {
        let mut s = Store::default();
        let mut p = sample().remove(0);
        s.insert(p.clone());
        p.bytes = 1;
        s.insert(p.clone());
        assert_eq!(s.points, vec![p.clone()]);
        assert!(s.contains(&p.key()));
    }
}
