//! The bounds that keep a config to what is plausibly meant, in one place (the README's
//! "Limits" table lists them with the older per-type ranges). Each refuses what is almost
//! certainly a mistake, or a value that would cost memory or hammer a service for nothing;
//! none is near what a real config needs.

use std::time::Duration;

/// The shortest `interval` and `interval_on_failure`: faster checks hammer the service and
/// tell nothing a scrape every 15 s could use (`2ms` is usually a typo for `2m`).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `timeout`: below it a run fails on scheduling jitter alone.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);
/// Extra attempts within one run: more retry a dead service in a tight loop (the run's
/// timeout bounds them in time, not in number) and hide a flapping one.
pub const MAX_RETRIES: u32 = 10;
/// A target name is the `name` label of every series and a line on the status page.
pub const MAX_NAME_CHARS: usize = 256;
/// Static labels on one target, its own and the global ones together.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_NAME_CHARS: usize = 128;
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// The longest registered HTTP method (UPDATEREDIRECTREF) has 17 characters.
pub const MAX_METHOD_CHARS: usize = 32;

/// Characters that change how text around them displays while showing nothing themselves:
/// the bidirectional overrides, embeddings, isolates and marks ("Trojan Source"), zero-width
/// spaces, the byte-order mark and the line and paragraph separators. In a name or label value
/// they make two different series look the same, or one look like another.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// What is wrong with text that shows as a label value, if anything: more than `max`
/// characters, control characters, or [invisible] ones. The message never quotes the text,
/// which may be megabytes long.
pub fn text_problem(text: &str, max: usize) -> Option<String> {
    let chars = text.chars().count();
    if chars > max {
        return Some(format!("is {chars} characters long; the limit is {max}"));
    }
    if let Some(c) = text.chars().find(|&c| c.is_control()) {
        return Some(format!(
            "contains the control character U+{:04X}",
            u32::from(c)
        ));
    }
    text.chars().find(|&c| invisible(c)).map(|c| {
        format!(
            "contains U+{:04X}, an invisible character that changes how text displays",
            u32::from(c)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_problem_names_length_control_and_invisible_characters() {
        assert_eq!(text_problem("web-1 (eu)", 256), None);
        assert_eq!(text_problem("café ünïcode", 256), None);
        assert_eq!(
            text_problem("abcd", 3).as_deref(),
            Some("is 4 characters long; the limit is 3")
        );
        assert_eq!(
            text_problem("a\tb", 256).as_deref(),
            Some("contains the control character U+0009")
        );
        for c in ['\u{202E}', '\u{2066}', '\u{200F}', '\u{200B}', '\u{FEFF}'] {
            let problem = text_problem(&format!("admin{c}txt"), 256).unwrap();
            assert!(problem.contains("an invisible character"), "{problem}");
        }
        // A joiner is part of how some scripts and emoji are written.
        assert_eq!(text_problem("\u{1F468}\u{200D}\u{1F4BB}", 256), None);
    }
}
