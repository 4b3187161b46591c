//! Printing the registry: a table for people, JSON lines for programs.

use std::io::{self, Write};

use pciplug::{DevType, DeviceView, MonitorStats, Registry, Transport};

/// Prints every device present (table or JSON lines), then a note on stderr about NVMe
/// multipath heads that could not be tied to a PCI path.
pub fn print_registry(registry: &Registry, json: bool) -> pciplug::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let write_err = |e| pciplug::Error::Io {
        op: "writing to stdout".into(),
        source: e,
    };
    if json {
        for view in registry.views() {
            serde_json::to_writer(&mut out, &view).map_err(|e| write_err(e.into()))?;
            writeln!(out).map_err(write_err)?;
        }
    } else {
        write_table(&mut out, registry).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    for (subsystem, head) in registry.unresolved_nvme_heads() {
        if head.devtype == DevType::Disk {
            tracing::warn!(
                "NVMe multipath head {} in {subsystem} is not tied to a PCI path: uevents do not \
                 say which controller it belongs to (the live listener reads it from sysfs)",
                head.name
            );
        }
    }
    Ok(())
}

fn write_table(out: &mut impl Write, registry: &Registry) -> io::Result<()> {
    let rows: Vec<[String; 5]> = registry.views().map(|v| row(&v)).collect();
    let header = ["PATH", "BDF", "ID", "DRIVER", "CHILDREN"].map(String::from);
    let mut widths = [0usize; 4];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )?;
    }
    let heads: Vec<String> = registry
        .unresolved_nvme_heads()
        .map(|(sub, h)| format!("{} ({sub})", h.name))
        .collect();
    if !heads.is_empty() {
        writeln!(
            out,
            "\nNVMe multipath heads not tied to a PCI path: {}",
            heads.join(", ")
        )?;
    }
    Ok(())
}

fn row(v: &DeviceView<'_>) -> [String; 5] {
    let mut children = Vec::new();
    for b in &v.block {
        let mut facts = vec![match b.devtype {
            DevType::Disk => "disk".to_owned(),
            DevType::Partition => "partition".to_owned(),
        }];
        match &b.transport {
            Transport::Scsi { address } => facts.push(format!("scsi {address}")),
            Transport::NvmeMultipath { subsystem } => facts.push(format!("multipath {subsystem}")),
            _ => {}
        }
        if let Some(nsid) = b.nsid {
            facts.push(format!("nsid {nsid}"));
        }
        if let Some(seq) = b.diskseq {
            facts.push(format!("diskseq {seq}"));
        }
        children.push(format!("{} ({})", b.name, facts.join(", ")));
    }
    for n in v.net {
        children.push(format!("{} (net)", n.name));
    }
    for c in v.nvme {
        children.push(format!("{} (nvme controller)", c.name));
    }
    [
        v.path.to_string(),
        v.bdf.to_string(),
        v.ids
            .map(|i| format!("{:04x}:{:04x}", i.id.0, i.id.1))
            .unwrap_or_else(|| "-".into()),
        v.driver.unwrap_or("-").to_owned(),
        if children.is_empty() {
            "-".to_owned()
        } else {
            children.join(", ")
        },
    ]
}

/// One `watch --stats` line: `stats received=.. applied=.. ...`, malformed datagrams by kind
/// after the total (`malformed=3 malformed.libudev=2 malformed.not-utf8=1`, kinds seen only);
/// with `json`, `{"stats":{...}}`.
pub fn write_stats(out: &mut impl Write, s: &MonitorStats, json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &serde_json::json!({ "stats": s }))
            .map_err(io::Error::from)?;
        return writeln!(out);
    }
    let r = &s.registry;
    write!(
        out,
        "stats received={} applied={} ignored={} unknown_action={} malformed={}",
        r.received, r.applied, r.ignored, r.unknown_action, r.malformed
    )?;
    for (kind, n) in r.malformed_kinds.iter().filter(|(_, n)| *n > 0) {
        write!(out, " malformed.{kind}={n}")?;
    }
    writeln!(
        out,
        " spoofed={} unplaceable={} truncated={} overflows={} resyncs={} resync_failures={} \
         dropped_changes={} subsystem_filter={}",
        r.spoofed,
        r.unplaceable,
        s.truncated,
        s.overflows,
        s.resyncs,
        s.resync_failures,
        s.dropped_changes,
        if s.subsystem_filter { "on" } else { "off" }
    )
}
