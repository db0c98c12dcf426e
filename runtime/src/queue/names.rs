//! Queue names and key prefixes, checked wherever a queue is opened — by
//! the CLI and by any program that builds a [`super::QueueConfig`] itself.

/// Hash tags Spool uses for its own keys: a queue of that name would share
/// the result cache's, the fleet store's or the tenants' slot and keys.
pub const RESERVED: [&str; 3] = ["cache", "plugins", "tenants"];

/// A queue name: 1–64 letters, digits, `_`, `-` or `.`, not reserved.
pub fn check_queue(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(format!(
            "invalid queue name {name:?}: expected 1-64 letters, digits, '_', '-' or '.'"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "queue name {name:?} is reserved: Spool's result cache, fleet store and tenant limits use {}; choose another",
            RESERVED.join(", ")
        ));
    }
    Ok(())
}

/// `PREFIX:{QUEUE/TENANT}`: the start of every key of one tenant's jobs in
/// one queue, a hash slot of its own. Queue names cannot hold `/`, so no
/// tenant's keys meet another queue's.
pub fn tenant_keys(prefix: &str, queue: &str, tenant: &str) -> String {
    format!("{prefix}:{{{queue}/{tenant}}}")
}

/// A group name: 1–128 letters, digits, `_`, `-`, `.`, `:` or `@` (room
/// for `customer-42` or `user@example.com`; nothing that reads as a key
/// separator or a hash tag).
pub fn check_group(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid group name {:?}: expected 1-128 letters, digits, '_', '-', '.', ':' or '@'",
            name.escape_debug().to_string()
        ))
    }
}

/// A content type: at most 255 bytes of printable ASCII (a MIME type with
/// its parameters). It is stored in the job's record and sent with every
/// claim of it; an unbounded one would get a tenant's jobs past the
/// claim's byte budget, which counts payloads.
pub fn check_content_type(value: &str) -> Result<(), String> {
    let ok =
        !value.is_empty() && value.len() <= 255 && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if ok {
        Ok(())
    } else {
        let shown: String = value.chars().take(40).collect();
        Err(format!(
            "invalid content type {:?}{} ({} bytes): expected 1-255 bytes of printable ASCII, such as application/json",
            shown.escape_debug().to_string(),
            if value.chars().count() > 40 {
                "…"
            } else {
                ""
            },
            value.len()
        ))
    }
}

/// A key prefix: braces would change every key's Redis Cluster hash tag,
/// and spaces or control characters make keys no one can type.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '{' | '}'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid prefix {prefix:?}: expected 1-64 printable ASCII characters without spaces, '{{' or '}}'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes_are_checked_and_reserved_names_refused() {
        assert!(check_queue("emails.v2").is_ok());
        for bad in ["", "a b", "a{b}", "x:y", &"q".repeat(65)] {
            assert!(check_queue(bad).is_err(), "{bad:?}");
        }
        for reserved in RESERVED {
            assert!(check_queue(reserved).unwrap_err().contains("reserved"));
        }
        assert!(check_prefix("spool-prod").is_ok());
        assert!(check_group("customer-42").is_ok());
        assert!(check_group("user@example.com").is_ok());
        for bad in ["", "a b", "a{b}", "x/y", "naïve", &"g".repeat(129)] {
            assert!(
                check_group(bad).unwrap_err().contains("invalid group name"),
                "{bad:?}"
            );
        }
        assert_eq!(
            tenant_keys("spool", "default", "acme"),
            "spool:{default/acme}"
        );
        for bad in ["", "a b", "a{", "}", "tab\t"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_types_are_short_printable_ascii() {
        for good in [
            "application/json",
            "text/plain; charset=utf-8",
            &"t".repeat(255),
        ] {
            assert!(check_content_type(good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(1 << 20);
        let err = check_content_type(&long).unwrap_err();
        assert!(err.contains("1048576 bytes") && err.len() < 200, "{err}");
        for bad in ["", "text/plain\n", "naïve/type", &"t".repeat(256)] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
    }
}
