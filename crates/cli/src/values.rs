//! Parsers for numeric flags that refuse what no run can use (NaN, infinities, values
//! out of range) at parse time, so that the error is a usage error (exit 2) before any
//! work starts.

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(v)
}

/// Any finite number.
pub fn finite(s: &str) -> Result<f64, String> {
    number(s)
}

/// A finite number above 0.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not above 0"))
    }
}

/// [`positive`] as `f32` (finite there too).
pub fn positive_f32(s: &str) -> Result<f32, String> {
    let v = positive(s)? as f32;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` is out of range"))
    }
}

/// A finite number at least 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is negative"))
    }
}

/// A fraction in [0, 1).
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not in [0, 1)"))
    }
}

/// A share in (0, 1].
pub fn share(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, 1]"))
    }
}

/// The mask id of unlabelled pixels, or none (every id is a class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoreIndex(pub Option<u32>);

/// A mask id of unlabelled pixels (0-255), or `none` (every id is a class).
pub fn ignore_index(s: &str) -> Result<IgnoreIndex, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(IgnoreIndex(None));
    }
    match s.trim().parse::<u32>() {
        Ok(v) if v <= 255 => Ok(IgnoreIndex(Some(v))),
        _ => Err(format!("`{s}` is not a mask id in 0..=255 or `none`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_out_of_range_values_are_refused() {
        for bad in ["NaN", "nan", "inf", "-inf", "x", ""] {
            assert!(finite(bad).is_err(), "{bad}");
        }
        assert_eq!(finite("-2.5"), Ok(-2.5));
        assert!(positive("0").is_err() && positive("-1").is_err());
        assert_eq!(positive("1e-3"), Ok(1e-3));
        assert!(positive_f32("1e300").is_err());
        assert!(non_negative("-0.1").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(fraction("1").is_err() && fraction("-0.1").is_err());
        assert_eq!(fraction("0.1"), Ok(0.1));
        assert_eq!(ignore_index("255"), Ok(IgnoreIndex(Some(255))));
        assert_eq!(ignore_index("None"), Ok(IgnoreIndex(None)));
        assert!(ignore_index("256").is_err() && ignore_index("-1").is_err());
    }
}
