//! Just enough of Kubernetes' resource.Quantity to size engine configuration
//! from the resources a user requests.

/// The value of a quantity in base units (bytes for memory, cores for CPU),
/// or `None` when the text is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        _ => return None,
    };
    (number.is_finite() && number >= 0.0).then_some(number * multiplier)
}

/// Bytes of a memory quantity, rounded down.
pub fn bytes(text: &str) -> Option<u64> {
    parse(text).map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("1Gi", Some(1073741824.0))]
    #[case("512Mi", Some(536870912.0))]
    #[case("1G", Some(1e9))]
    #[case("500m", Some(0.5))]
    #[case("2", Some(2.0))]
    #[case("1.5Gi", Some(1610612736.0))]
    #[case("10GB", None)]
    #[case("10K", None)]
    #[case("abc", None)]
    #[case("-1Gi", None)]
    fn parses_kubernetes_quantities(#[case] text: &str, #[case] expected: Option<f64>) {
        assert_eq!(parse(text), expected);
    }
}
