//! Interfaces watched by name: an interface deleted and created again (a
//! veth pair rebuilt, a bond re-enslaved) gets a new index and loses every
//! program attached to it. The agent checks each second and reattaches; the
//! new index takes over the old counter slot, so the interface's counters
//! go on from where they were.
use super::{
    attach::{ifindex, AttachError, Attachment, IngressHook, Mode},
    Datapath,
};

pub struct Watched {
    name: String,
    mode: Mode,
    ifindex: u32,
    /// `None` while the interface is gone.
    att: Option<Attachment>,
    /// The last reattach failure, so that it is logged once, not every second.
    last_error: Option<String>,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// The interface is gone; counting on it stops until it is back.
    Vanished,
    /// The interface is back (or was replaced) and the programs are on it.
    Reattached { ifindex: u32, ingress: IngressHook },
    /// It is back but attaching failed; tried again at the next check.
    Failed(String),
}

impl Watched {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn attachment(&self) -> Option<&Attachment> {
        self.att.as_ref()
    }
}

impl Datapath {
    pub fn watch(&mut self, name: &str, mode: Mode) -> Result<Watched, AttachError> {
        let att = self.attach(name, mode)?;
        Ok(Watched {
            name: name.to_owned(),
            mode,
            ifindex: att.ifindex(),
            att: Some(att),
            last_error: None,
        })
    }

    /// Whether `w` is still on the interface of its name; reattaches if the
    /// interface came back.
    pub fn recheck(&mut self, w: &mut Watched) -> Option<Change> {
        match ifindex(&w.name) {
            Err(_) => {
                let mut att = w.att.take()?;
                // The kernel took the links and any qdisc with the device.
                att.forget_qdisc();
                w.last_error = None;
                Some(Change::Vanished)
            }
            Ok(idx) if idx == w.ifindex && w.att.is_some() => None,
            Ok(idx) => {
                if let Some(mut old) = w.att.take() {
                    // Replaced between two checks: the old device is gone.
                    old.forget_qdisc();
                }
                if let Err(e) = self.move_slot(w.ifindex, idx) {
                    return w.failed(e.to_string());
                }
                w.ifindex = idx;
                match self.attach(&w.name, w.mode) {
                    Ok(att) => {
                        let ingress = att.ingress();
                        w.att = Some(att);
                        w.last_error = None;
                        Some(Change::Reattached {
                            ifindex: idx,
                            ingress,
                        })
                    }
                    Err(e) => w.failed(e.to_string()),
                }
            }
        }
    }
}

impl Watched {
    fn failed(&mut self, e: String) -> Option<Change> {
        if self.last_error.as_ref() == Some(&e) {
            return None;
        }
        self.last_error = Some(e.clone());
        Some(Change::Failed(e))
    }
}
