//! SLURM hostlist expansion: `node[01-03,7],gpu-a[1-2]-ib` -> node01 node02 node03 node7
//! gpu-a1-ib gpu-a2-ib. Zero padding is kept (`[01-02]` -> 01, 02), as `scontrol show hostnames`
//! does; several bracket groups in one name expand as a cartesian product, in order.
use crate::error::{Error, Result};

/// Expands a SLURM hostlist expression into host names, in order.
pub fn expand(list: &str) -> Result<Vec<String>> {
    let mut hosts = Vec::new();
    for item in split_top_level(list)? {
        if !item.is_empty() {
            hosts.extend(expand_item(item)?);
        }
    }
    Ok(hosts)
}

/// Splits on commas that are not inside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(bad(list, "unbalanced or nested brackets"));
        }
    }
    if depth != 0 {
        return Err(bad(list, "unclosed bracket"));
    }
    items.push(list[start..].trim());
    Ok(items)
}

fn expand_item(item: &str) -> Result<Vec<String>> {
    let Some(open) = item.find('[') else { return Ok(vec![item.to_string()]) };
    let close = item[open..].find(']').map(|i| i + open).ok_or_else(|| bad(item, "unclosed bracket"))?;
    let prefix = &item[..open];
    let rests = expand_item(&item[close + 1..])?;
    let mut out = Vec::new();
    for range in item[open + 1..close].split(',') {
        for middle in expand_range(range.trim(), item)? {
            out.extend(rests.iter().map(|rest| format!("{prefix}{middle}{rest}")));
        }
    }
    Ok(out)
}

fn expand_range(range: &str, item: &str) -> Result<Vec<String>> {
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let parse =
        |s: &str| s.parse::<u64>().map_err(|_| bad(item, &format!("`{range}` is not a number or range")));
    let (start, end) = (parse(lo)?, parse(hi)?);
    if end < start || end - start > 100_000 {
        return Err(bad(item, &format!("range `{range}` is empty or too large")));
    }
    let width = if lo.len() > 1 && lo.starts_with('0') { lo.len() } else { 0 };
    Ok((start..=end).map(|n| format!("{n:0width$}")).collect())
}

fn bad(list: &str, why: &str) -> Error {
    Error::Env(format!("cannot expand the SLURM hostlist {list:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_scontrol() {
        let cases: &[(&str, &[&str])] = &[
            ("node1", &["node1"]),
            ("node[1-3]", &["node1", "node2", "node3"]),
            ("node[01-03,7]", &["node01", "node02", "node03", "node7"]),
            ("a[1-2],b3", &["a1", "a2", "b3"]),
            ("gpu-a[1-2]-ib", &["gpu-a1-ib", "gpu-a2-ib"]),
            ("r[1-2]n[0-1]", &["r1n0", "r1n1", "r2n0", "r2n1"]),
            ("n[098-101]", &["n098", "n099", "n100", "n101"]),
        ];
        for (list, want) in cases {
            assert_eq!(expand(list).unwrap(), *want, "{list}");
        }
    }

    #[test]
    fn malformed_lists_are_errors() {
        for list in ["node[1-", "node[a-b]", "node[3-1]", "node]1["] {
            assert!(expand(list).is_err(), "{list}");
        }
    }
}
