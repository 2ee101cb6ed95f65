//! Prices and bills: turns the ledger's raw counts into Durable-Objects-style
//! line items (requests, duration, rows read, rows written, storage), a
//! total, and text or JSON.
//!
//! It does not count anything (the edge and workers do, [`crate::ledger`]
//! keeps the counts) and does not read files. The arithmetic stays exact as
//! long as it can: requests are summed in 1/20ths of a request (20 incoming
//! WebSocket messages bill as 1 request, summed before dividing, never
//! rounded per message or per object), rows and milliseconds in `u128`; only
//! the final quantities and costs become `f64`, and costs are rounded only
//! when displayed.
//!
//! Units: a GB is 10^9 bytes and a month 730 hours (365 × 24 / 12), the
//! conventions of Cloudflare's GB-month; duration is billed at
//! `memory_gb_per_object` (128 MB = 0.125 GB) per live object, whatever it
//! really uses.

use crate::ledger::{ObjectTotals, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Bytes in a billed GB.
pub const BYTES_PER_GB: f64 = 1e9;
/// Hours in a billed month.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The price table (`[prices]` in config); defaults are today's Durable
/// Objects prices on the paid plan (monthly included amounts).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// USD per million billable requests beyond the included ones.
    pub requests_usd_per_million: f64,
    /// Requests included.
    pub requests_included: u64,
    /// Incoming WebSocket messages that bill as one request (20:1).
    pub ws_messages_per_request: u64,
    /// USD per million GB-s beyond the included ones.
    pub duration_usd_per_million_gb_s: f64,
    /// GB-s included.
    pub duration_included_gb_s: f64,
    /// Memory billed per live object, whatever it uses.
    pub memory_gb_per_object: f64,
    /// USD per million rows read beyond the included ones.
    pub rows_read_usd_per_million: f64,
    /// Rows read included.
    pub rows_read_included: u64,
    /// USD per million rows written beyond the included ones.
    pub rows_written_usd_per_million: f64,
    /// Rows written included.
    pub rows_written_included: u64,
    /// USD per GB-month stored beyond the included ones.
    pub storage_usd_per_gb_month: f64,
    /// GB-months included.
    pub storage_included_gb_month: f64,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            requests_usd_per_million: 0.15,
            requests_included: 1_000_000,
            ws_messages_per_request: 20,
            duration_usd_per_million_gb_s: 12.50,
            duration_included_gb_s: 400_000.0,
            memory_gb_per_object: 0.125,
            rows_read_usd_per_million: 0.001,
            rows_read_included: 25_000_000_000,
            rows_written_usd_per_million: 1.00,
            rows_written_included: 50_000_000,
            storage_usd_per_gb_month: 0.20,
            storage_included_gb_month: 5.0,
        }
    }
}

impl Prices {
    /// Checks the table: every amount finite and not negative, and at least
    /// one message per request. On error gives the key (under `prices.`)
    /// and what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let amounts = [
            ("requests_usd_per_million", self.requests_usd_per_million),
            (
                "duration_usd_per_million_gb_s",
                self.duration_usd_per_million_gb_s,
            ),
            ("duration_included_gb_s", self.duration_included_gb_s),
            ("memory_gb_per_object", self.memory_gb_per_object),
            ("rows_read_usd_per_million", self.rows_read_usd_per_million),
            (
                "rows_written_usd_per_million",
                self.rows_written_usd_per_million,
            ),
            ("storage_usd_per_gb_month", self.storage_usd_per_gb_month),
            ("storage_included_gb_month", self.storage_included_gb_month),
        ];
        for (key, value) in amounts {
            if !value.is_finite() || value < 0.0 {
                return Err((key, format!("{value} is not a finite amount of at least 0")));
            }
        }
        if self.ws_messages_per_request == 0 {
            return Err(("ws_messages_per_request", "must be at least 1".to_owned()));
        }
        Ok(())
    }
}

/// One priced line of a bill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineItem {
    /// What is billed: `requests`, `duration`, `rows read`, `rows written`, `storage`.
    pub item: &'static str,
    /// Unit of the quantities: `requests`, `GB-s`, `rows`, `GB-month`.
    pub unit: &'static str,
    /// Used in the window.
    pub quantity: f64,
    /// Included for free.
    pub included: f64,
    /// `quantity - included`, at least 0.
    pub billable: f64,
    /// USD per `price_per` units.
    pub unit_price_usd: f64,
    /// Units the price is for: 1,000,000 or 1.
    pub price_per: u64,
    /// `billable / price_per × unit_price_usd`, unrounded.
    pub cost_usd: f64,
}

/// Raw counts of one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassSubtotal {
    /// The class.
    pub class: String,
    /// Objects listed in the window.
    pub objects: u64,
    /// Their counts summed.
    pub usage: Usage,
    /// Their last known sizes summed.
    pub stored_bytes: u64,
    /// Requests as billed, before the included ones: requests + RPC +
    /// alarms + incoming messages / 20.
    pub billable_requests: f64,
    /// Duration in GB-s.
    pub gb_s: f64,
}

/// A bill for one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bill {
    /// Requests, RPC calls, alarms and incoming messages at 20:1.
    pub requests: LineItem,
    /// GB-s live in memory.
    pub duration: LineItem,
    /// SQLite rows read.
    pub rows_read: LineItem,
    /// SQLite rows written.
    pub rows_written: LineItem,
    /// GB-months stored.
    pub storage: LineItem,
    /// Sum of the lines' costs, unrounded.
    pub total_usd: f64,
    /// Objects billed.
    pub objects: u64,
    /// Every count summed (unbilled ones too).
    pub usage: Usage,
    /// The storage integral the storage line comes from.
    pub storage_byte_hours: u128,
    /// Incoming messages per billed request this bill used.
    pub ws_messages_per_request: u64,
    /// Raw quantities per class, by class name.
    pub classes: Vec<ClassSubtotal>,
}

impl Bill {
    /// The line items in display order.
    pub fn lines(&self) -> [&LineItem; 5] {
        [
            &self.requests,
            &self.duration,
            &self.rows_read,
            &self.rows_written,
            &self.storage,
        ]
    }
}

const MILLION: u64 = 1_000_000;

/// Requests in 1/`per_request` units: exact, nothing rounded per message.
fn request_units(usage: &Usage, per_request: u64) -> u128 {
    let whole = u128::from(usage.requests) + u128::from(usage.rpc_calls) + u128::from(usage.alarms);
    whole * u128::from(per_request) + u128::from(usage.ws_messages_in)
}

fn gb_s(active_ms: u128, prices: &Prices) -> f64 {
    active_ms as f64 / 1000.0 * prices.memory_gb_per_object
}

fn line(
    item: &'static str,
    unit: &'static str,
    quantity: f64,
    included: f64,
    billable: f64,
    unit_price_usd: f64,
    price_per: u64,
) -> LineItem {
    LineItem {
        item,
        unit,
        quantity,
        included,
        billable,
        unit_price_usd,
        price_per,
        cost_usd: billable / price_per as f64 * unit_price_usd,
    }
}

/// A line for an exact integer count.
fn count_line(item: &'static str, quantity: u128, included: u64, usd_per_million: f64) -> LineItem {
    let billable = quantity.saturating_sub(u128::from(included));
    line(
        item,
        "rows",
        quantity as f64,
        included as f64,
        billable as f64,
        usd_per_million,
        MILLION,
    )
}

/// Prices `totals` (from [`crate::ledger::Ledger::totals`]) and the storage
/// integral (from [`crate::ledger::Ledger::storage_byte_hours`]) of one
/// window. The included amounts are subtracted once, from the whole window.
pub fn bill(totals: &[ObjectTotals], storage_byte_hours: u128, prices: &Prices) -> Bill {
    // `check` refuses 0; a bill must not divide by it anyway.
    let per_request = prices.ws_messages_per_request.max(1);
    let mut usage = Usage::default();
    let mut units: u128 = 0;
    let mut active_ms: u128 = 0;
    let mut rows_read: u128 = 0;
    let mut rows_written: u128 = 0;
    let mut classes: BTreeMap<&str, ClassSubtotal> = BTreeMap::new();
    for object in totals {
        usage.add(&object.usage);
        units += request_units(&object.usage, per_request);
        active_ms += u128::from(object.usage.active_ms);
        rows_read += u128::from(object.usage.rows_read);
        rows_written += u128::from(object.usage.rows_written);
        let class = classes
            .entry(&object.class)
            .or_insert_with(|| ClassSubtotal {
                class: object.class.clone(),
                objects: 0,
                usage: Usage::default(),
                stored_bytes: 0,
                billable_requests: 0.0,
                gb_s: 0.0,
            });
        class.objects += 1;
        class.usage.add(&object.usage);
        class.stored_bytes = class.stored_bytes.saturating_add(object.stored_bytes);
    }
    let classes: Vec<ClassSubtotal> = classes
        .into_values()
        .map(|mut class| {
            class.billable_requests =
                request_units(&class.usage, per_request) as f64 / per_request as f64;
            class.gb_s = gb_s(u128::from(class.usage.active_ms), prices);
            class
        })
        .collect();

    let included_units = u128::from(prices.requests_included) * u128::from(per_request);
    let per = per_request as f64;
    let requests = line(
        "requests",
        "requests",
        units as f64 / per,
        prices.requests_included as f64,
        units.saturating_sub(included_units) as f64 / per,
        prices.requests_usd_per_million,
        MILLION,
    );

    let duration_gb_s = gb_s(active_ms, prices);
    let duration = line(
        "duration",
        "GB-s",
        duration_gb_s,
        prices.duration_included_gb_s,
        (duration_gb_s - prices.duration_included_gb_s).max(0.0),
        prices.duration_usd_per_million_gb_s,
        MILLION,
    );

    let gb_months = storage_byte_hours as f64 / (BYTES_PER_GB * HOURS_PER_MONTH);
    let storage = line(
        "storage",
        "GB-month",
        gb_months,
        prices.storage_included_gb_month,
        (gb_months - prices.storage_included_gb_month).max(0.0),
        prices.storage_usd_per_gb_month,
        1,
    );

    let rows_read = count_line(
        "rows read",
        rows_read,
        prices.rows_read_included,
        prices.rows_read_usd_per_million,
    );
    let rows_written = count_line(
        "rows written",
        rows_written,
        prices.rows_written_included,
        prices.rows_written_usd_per_million,
    );
    let total_usd = requests.cost_usd
        + duration.cost_usd
        + rows_read.cost_usd
        + rows_written.cost_usd
        + storage.cost_usd;
    Bill {
        requests,
        duration,
        rows_read,
        rows_written,
        storage,
        total_usd,
        objects: totals.len() as u64,
        usage,
        storage_byte_hours,
        ws_messages_per_request: per_request,
        classes,
    }
}

/// Writes the bill as a human table: line items, total, what is counted but
/// not billed, and the per-class subtotals. Costs are rounded to cents here
/// and only here.
pub fn write_text(bill: &Bill, out: &mut dyn Write) -> io::Result<()> {
    let mut rows = vec![row(&[
        "item", "quantity", "included", "billable", "unit", "price", "cost",
    ])];
    for item in bill.lines() {
        let per = if item.price_per == MILLION {
            "M".to_owned()
        } else {
            item.unit.to_owned()
        };
        rows.push(vec![
            item.item.to_owned(),
            number(item.quantity),
            number(item.included),
            number(item.billable),
            item.unit.to_owned(),
            format!("{}/{per}", usd(item.unit_price_usd)),
            format!("${:.2}", item.cost_usd),
        ]);
    }
    rows.push(vec![
        "total".to_owned(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("${:.2}", bill.total_usd),
    ]);
    write_table(out, &rows, &[false, true, true, true, false, true, true])?;

    let u = &bill.usage;
    writeln!(out)?;
    writeln!(
        out,
        "requests = {} HTTP (with {} WebSocket upgrades) + {} RPC + {} alarms + {} incoming WebSocket messages / {}",
        integer(u.requests.into()),
        integer(u.ws_upgrades.into()),
        integer(u.rpc_calls.into()),
        integer(u.alarms.into()),
        integer(u.ws_messages_in.into()),
        bill.ws_messages_per_request,
    )?;
    writeln!(
        out,
        "counted, not billed: {} outgoing messages, {} auto-responses, {} protocol pings",
        integer(u.ws_messages_out.into()),
        integer(u.auto_responses.into()),
        integer(u.protocol_pings.into()),
    )?;
    writeln!(
        out,
        "{} objects, {} byte-hours stored",
        integer(bill.objects.into()),
        integer(bill.storage_byte_hours),
    )?;
    if bill.classes.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut rows = vec![row(&[
        "class",
        "objects",
        "requests",
        "GB-s",
        "rows read",
        "rows written",
        "stored bytes",
        "ws in",
        "ws out",
        "auto-responses",
        "pings",
    ])];
    for class in &bill.classes {
        let u = &class.usage;
        rows.push(vec![
            class.class.clone(),
            integer(class.objects.into()),
            number(class.billable_requests),
            number(class.gb_s),
            integer(u.rows_read.into()),
            integer(u.rows_written.into()),
            integer(class.stored_bytes.into()),
            integer(u.ws_messages_in.into()),
            integer(u.ws_messages_out.into()),
            integer(u.auto_responses.into()),
            integer(u.protocol_pings.into()),
        ]);
    }
    let mut right = [true; 11];
    right[0] = false;
    write_table(out, &rows, &right)
}

/// Writes one line of raw counts per object.
pub fn write_objects_text(objects: &[ObjectTotals], out: &mut dyn Write) -> io::Result<()> {
    let mut rows = vec![row(&[
        "class",
        "name",
        "requests",
        "ws upgrades",
        "rpc",
        "alarms",
        "ws in",
        "ws out",
        "auto-responses",
        "pings",
        "active ms",
        "rows read",
        "rows written",
        "stored bytes",
    ])];
    for object in objects {
        let u = &object.usage;
        let mut cells = vec![object.class.clone(), object.name.clone()];
        cells.extend(
            [
                u.requests,
                u.ws_upgrades,
                u.rpc_calls,
                u.alarms,
                u.ws_messages_in,
                u.ws_messages_out,
                u.auto_responses,
                u.protocol_pings,
                u.active_ms,
                u.rows_read,
                u.rows_written,
                object.stored_bytes,
            ]
            .map(|v| integer(v.into())),
        );
        rows.push(cells);
    }
    let mut right = [true; 14];
    right[0] = false;
    right[1] = false;
    write_table(out, &rows, &right)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Writes rows padded to their columns' widths, two spaces apart.
fn write_table(out: &mut dyn Write, rows: &[Vec<String>], right: &[bool]) -> io::Result<()> {
    let mut widths = vec![0usize; right.len()];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&format!("{cell:>width$}"));
            } else {
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `1234567` as `1,234,567`.
fn integer(value: u128) -> String {
    let digits = value.to_string();
    // The first group holds 1 to 3 digits, every later one 3.
    let (head, tail) = digits.split_at(match digits.len() % 3 {
        0 => 3.min(digits.len()),
        n => n,
    });
    let mut grouped = head.to_owned();
    for group in tail.as_bytes().chunks(3) {
        grouped.push(',');
        grouped.extend(group.iter().map(|&b| char::from(b)));
    }
    grouped
}

/// A quantity with thousands grouped and up to 3 decimals, trailing zeros
/// dropped: `12,960,000`, `0.95`, `0.001`.
fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let grouped = whole
        .parse::<u128>()
        .map_or_else(|_| whole.to_owned(), integer);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        grouped
    } else {
        format!("{grouped}.{fraction}")
    }
}

/// A price: cents when it is a whole number of cents, else as precise as
/// it is (`$0.15`, `$12.50`, `$0.001`).
fn usd(value: f64) -> String {
    let cents = value * 100.0;
    if (cents - cents.round()).abs() < 1e-9 {
        format!("${value:.2}")
    } else {
        format!("${value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECONDS_IN_30_DAYS: u64 = 30 * 24 * 3600;

    /// The chat app of the pricing docs: 100 objects, each receiving one
    /// WebSocket message per second for 30 days, live `active_ms` each.
    fn chat_app(active_ms: u64) -> Vec<ObjectTotals> {
        (0..100)
            .map(|i| ObjectTotals {
                class: "ChatRoom".into(),
                name: format!("room-{i}"),
                usage: Usage {
                    ws_messages_in: SECONDS_IN_30_DAYS,
                    active_ms,
                    ..Usage::default()
                },
                stored_bytes: 0,
            })
            .collect()
    }

    fn round3(x: f64) -> f64 {
        (x * 1000.0).round() / 1000.0
    }

    #[test]
    fn chat_app_messages_bill_at_twenty_to_one() {
        let bill = bill(&chat_app(0), 0, &Prices::default());
        assert_eq!(bill.usage.ws_messages_in, 259_200_000);
        assert_eq!(bill.requests.quantity, 12_960_000.0);
        assert_eq!(bill.requests.billable, 11_960_000.0);
        assert_eq!(round3(bill.requests.cost_usd), 1.794);
        assert_eq!(round3(bill.total_usd), 1.794);
    }

    #[test]
    fn chat_app_without_hibernation_pays_for_every_second() {
        let bill = bill(&chat_app(SECONDS_IN_30_DAYS * 1000), 0, &Prices::default());
        assert_eq!(bill.duration.quantity, 32_400_000.0);
        assert_eq!(bill.duration.billable, 32_000_000.0);
        assert_eq!(round3(bill.duration.cost_usd), 400.0);
        assert_eq!(round3(bill.total_usd), 401.794);
    }

    #[test]
    fn chat_app_active_one_second_a_minute_pays_for_those_seconds() {
        let minutes = SECONDS_IN_30_DAYS / 60;
        let bill = bill(&chat_app(minutes * 1000), 0, &Prices::default());
        assert_eq!(bill.duration.quantity, 540_000.0);
        assert_eq!(bill.duration.billable, 140_000.0);
        assert_eq!(round3(bill.duration.cost_usd), 1.75);
        assert_eq!(bill.classes.len(), 1);
        assert_eq!(bill.classes[0].objects, 100);
        assert_eq!(bill.classes[0].gb_s, 540_000.0);
    }

    #[test]
    fn nineteen_messages_bill_nineteen_twentieths_of_a_request() {
        let totals = [ObjectTotals {
            class: "R".into(),
            name: "a".into(),
            usage: Usage {
                ws_messages_in: 19,
                ..Usage::default()
            },
            stored_bytes: 0,
        }];
        let bill = bill(&totals, 0, &Prices::default());
        assert_eq!(bill.requests.quantity, 0.95);
        // Across objects too: 19 + 1 messages on two objects are 1 request.
        let mut two = totals.to_vec();
        two.push(ObjectTotals {
            name: "b".into(),
            usage: Usage {
                ws_messages_in: 1,
                ..Usage::default()
            },
            ..totals[0].clone()
        });
        let bill = super::bill(&two, 0, &Prices::default());
        assert_eq!(bill.requests.quantity, 1.0);
        assert_eq!(bill.classes[0].billable_requests, 1.0);
    }

    #[test]
    fn included_amounts_are_subtracted_and_only_the_rest_is_billed() {
        let prices = Prices::default();
        let one = |usage: Usage, stored_bytes| ObjectTotals {
            class: "R".into(),
            name: "a".into(),
            usage,
            stored_bytes,
        };
        // Exactly the included requests: nothing billed; one more million:
        // $0.15. Requests, RPC and alarms all count; outgoing messages,
        // pings and auto-responses do not.
        let at_tier = one(
            Usage {
                requests: 400_000,
                rpc_calls: 300_000,
                alarms: 300_000,
                ws_messages_out: 9_000_000,
                protocol_pings: 9_000_000,
                auto_responses: 9_000_000,
                ..Usage::default()
            },
            0,
        );
        let b = bill(std::slice::from_ref(&at_tier), 0, &prices);
        assert_eq!(b.requests.quantity, 1_000_000.0);
        assert_eq!(b.requests.billable, 0.0);
        assert_eq!(b.total_usd, 0.0);
        let mut over = at_tier;
        over.usage.ws_messages_in = 20_000_000;
        assert_eq!(round3(bill(&[over], 0, &prices).requests.cost_usd), 0.15);

        let rows = one(
            Usage {
                rows_read: 25_000_000_000 + 3_000_000,
                rows_written: 50_000_000 + 2_000_000,
                ..Usage::default()
            },
            0,
        );
        let b = bill(&[rows], 0, &prices);
        assert_eq!(b.rows_read.billable, 3_000_000.0);
        assert_eq!(round3(b.rows_read.cost_usd), 0.003);
        assert_eq!(b.rows_written.billable, 2_000_000.0);
        assert_eq!(round3(b.rows_written.cost_usd), 2.0);

        // 6 GB for a whole month: 1 GB-month over the 5 included.
        let byte_hours = 6 * 1_000_000_000u128 * 730;
        let b = bill(&[], byte_hours, &prices);
        assert_eq!(b.storage.quantity, 6.0);
        assert_eq!(b.storage.billable, 1.0);
        assert_eq!(round3(b.storage.cost_usd), 0.2);
        let b = bill(&[], byte_hours / 2, &prices);
        assert_eq!(b.storage.billable, 0.0);
    }

    #[test]
    fn zero_usage_costs_nothing() {
        let b = bill(&[], 0, &Prices::default());
        assert_eq!(b.total_usd, 0.0);
        assert!(b
            .lines()
            .iter()
            .all(|l| l.quantity == 0.0 && l.cost_usd == 0.0));
        assert!(b.classes.is_empty());
        let idle = ObjectTotals {
            class: "R".into(),
            name: "a".into(),
            ..ObjectTotals::default()
        };
        assert_eq!(bill(&[idle], 0, &Prices::default()).total_usd, 0.0);
    }

    #[test]
    fn prices_refuse_negatives_and_zero_messages_per_request() {
        assert_eq!(Prices::default().check(), Ok(()));
        let prices = Prices {
            rows_written_usd_per_million: -1.0,
            ..Prices::default()
        };
        assert_eq!(
            prices.check().unwrap_err().0,
            "rows_written_usd_per_million"
        );
        let prices = Prices {
            storage_included_gb_month: f64::NAN,
            ..Prices::default()
        };
        assert_eq!(prices.check().unwrap_err().0, "storage_included_gb_month");
        let prices = Prices {
            ws_messages_per_request: 0,
            ..Prices::default()
        };
        assert_eq!(prices.check().unwrap_err().0, "ws_messages_per_request");
        // Still no division by zero if an unchecked table gets through.
        let _ = bill(&[], 0, &prices);
    }

    #[test]
    fn text_shows_each_line_and_the_total_in_cents() {
        let b = bill(
            &chat_app(SECONDS_IN_30_DAYS / 60 * 1000),
            0,
            &Prices::default(),
        );
        let mut out = Vec::new();
        write_text(&b, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} line in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("requests "),
            "requests 12,960,000 1,000,000 11,960,000 requests $0.15/M $1.79"
        );
        assert_eq!(
            line("duration"),
            "duration 540,000 400,000 140,000 GB-s $12.50/M $1.75"
        );
        assert_eq!(
            line("rows read"),
            "rows read 0 25,000,000,000 0 rows $0.001/M $0.00"
        );
        assert_eq!(line("total"), "total $3.54");
        assert!(
            text.contains("259,200,000 incoming WebSocket messages / 20"),
            "{text}"
        );
        assert!(
            line("ChatRoom").starts_with("ChatRoom 100 12,960,000 540,000"),
            "{text}"
        );
    }

    #[test]
    fn json_carries_the_same_numbers() {
        let b = bill(&chat_app(0), 0, &Prices::default());
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["requests"]["quantity"], 12_960_000.0);
        assert_eq!(json["requests"]["cost_usd"], b.requests.cost_usd);
        assert_eq!(json["total_usd"], b.total_usd);
        assert_eq!(json["usage"]["ws_messages_in"], 259_200_000);
        assert_eq!(json["classes"][0]["class"], "ChatRoom");
    }

    #[test]
    fn quantities_are_grouped_and_trimmed() {
        assert_eq!(number(0.95), "0.95");
        assert_eq!(number(12_960_000.0), "12,960,000");
        assert_eq!(number(1234.5), "1,234.5");
        assert_eq!(number(0.0), "0");
        assert_eq!(integer(1000), "1,000");
        assert_eq!(integer(999), "999");
        assert_eq!(usd(0.15), "$0.15");
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(usd(0.001), "$0.001");
    }
}
