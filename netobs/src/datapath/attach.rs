//! Attaching the programs to an interface and taking them off again.
//!
//! The links are owned here and detach when dropped, so leaving scope (a
//! return, an error, a panic) cannot leave a program behind. On kernels with
//! TCX (6.6+) and XDP links, the kernel also detaches them if the agent is
//! killed, because they live only as long as our file descriptors.
use std::{ffi::CString, fmt};

use aya::{
    programs::{
        tc::{
            qdisc_add_clsact, qdisc_detach_program, NlOptions, SchedClassifierLink,
            TcAttachOptions, TcAttachType,
        },
        xdp::XdpLink,
        LinkOrder, XdpMode,
    },
    util::KernelVersion,
};
use netobs_common::Direction;

use super::{names, Datapath, DatapathError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// TC classifier on ingress and egress.
    Tc,
    /// XDP on ingress (native if the driver has it, else generic), TC on egress.
    Xdp,
    /// Native XDP on ingress where the driver supports it, otherwise TC.
    Auto,
}

/// Which hook watches the ingress side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngressHook {
    Tc,
    XdpNative,
    XdpGeneric,
}

impl fmt::Display for IngressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IngressHook::Tc => "tc",
            IngressHook::XdpNative => "xdp (native)",
            IngressHook::XdpGeneric => "xdp (generic)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interface {0:?} does not exist (list interfaces with `ip link`)")]
    NoSuchInterface(String),
    #[error("cannot attach the {hook} program to {iface}: {source}")]
    Attach {
        iface: String,
        hook: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot add a clsact qdisc to {iface}: {source}")]
    Qdisc {
        iface: String,
        #[source]
        source: aya::programs::tc::TcError,
    },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

enum Link {
    Tc(SchedClassifierLink),
    Xdp(XdpLink),
}

/// Programs attached to one interface; dropping it detaches them.
pub struct Attachment {
    iface: String,
    ifindex: u32,
    ingress: IngressHook,
    links: Vec<Link>,
    /// We added the clsact qdisc (kernels before TCX) and remove it again.
    created_clsact: bool,
}

impl Attachment {
    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn ingress(&self) -> IngressHook {
        self.ingress
    }

    /// The interface is gone, and the qdisc we added with it.
    pub(crate) fn forget_qdisc(&mut self) {
        self.created_clsact = false;
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("iface", &self.iface)
            .field("ifindex", &self.ifindex)
            .field("ingress", &self.ingress)
            .finish()
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // Dropping a link detaches it.
        while let Some(link) = self.links.pop() {
            match link {
                Link::Tc(l) => drop(l),
                Link::Xdp(l) => drop(l),
            }
        }
        if self.created_clsact {
            // aya has no call to delete a qdisc. By index, not name: an
            // interface deleted and created again under the same name has
            // a new index, and its new qdisc is not ours. Gone with its
            // interface (ENODEV), or already removed by someone else (the
            // kernel then finds a handle-less placeholder, EINVAL, or no
            // ingress queue at all, ENOENT) is fine.
            match crate::netlink::delete_clsact(self.ifindex) {
                Err(e)
                    if !matches!(
                        e.raw_os_error(),
                        Some(libc::ENODEV | libc::ENOENT | libc::EINVAL)
                    ) =>
                {
                    log::warn!(
                        "could not remove the clsact qdisc netobs added to {} ({e}): \
                     remove it with `tc qdisc del dev {} clsact`",
                        self.iface,
                        self.iface
                    )
                }
                _ => {}
            }
        }
    }
}

pub fn ifindex(iface: &str) -> Result<u32, AttachError> {
    let name = CString::new(iface).map_err(|_| AttachError::NoSuchInterface(iface.to_owned()))?;
    // SAFETY: name is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(AttachError::NoSuchInterface(iface.to_owned()));
    }
    Ok(idx)
}

fn tcx_available() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// Which kernel API attaches the TC programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TcApi {
    /// TCX where the kernel has it (6.6+), else netlink.
    #[default]
    Auto,
    /// TCX links: they die with the agent, so nothing can be left behind.
    Tcx,
    /// Classic tc filters on a clsact qdisc (the only way before 6.6).
    Netlink,
}

impl TcApi {
    fn netlink(self) -> bool {
        match self {
            TcApi::Auto => !tcx_available(),
            TcApi::Tcx => false,
            TcApi::Netlink => true,
        }
    }
}

impl Datapath {
    /// Attaches to `iface` in `mode` and gives it its own counter slot.
    pub fn attach(&mut self, iface: &str, mode: Mode) -> Result<Attachment, AttachError> {
        let ifindex = ifindex(iface)?;
        self.register_interface(ifindex)?;
        let mut att = Attachment {
            iface: iface.to_owned(),
            ifindex,
            ingress: IngressHook::Tc,
            links: Vec::new(),
            created_clsact: false,
        };
        if self.tc_api.netlink() {
            // tc filters outlive their process: an agent killed before it
            // could detach left its own, which would now run twice. Its
            // clsact qdisc is then taken as ours, to remove on exit.
            let mut adopted = false;
            for (kind, name) in [
                (TcAttachType::Ingress, names::TC_INGRESS),
                (TcAttachType::Egress, names::TC_EGRESS),
            ] {
                adopted |= qdisc_detach_program(iface, kind, name).is_ok();
            }
            if adopted {
                log::warn!("{iface}: removed the tc filters a previous netobs left behind");
            }
            match qdisc_add_clsact(iface) {
                Ok(()) => att.created_clsact = true,
                Err(aya::programs::tc::TcError::NetlinkError(e))
                    if e.raw_os_error() == Some(libc::EEXIST) && adopted =>
                {
                    att.created_clsact = true
                }
                Err(aya::programs::tc::TcError::NetlinkError(e))
                    if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(source) => {
                    return Err(AttachError::Qdisc {
                        iface: iface.to_owned(),
                        source,
                    })
                }
            }
        }
        // Egress is always TC: XDP sees only what arrives.
        self.attach_tc(&mut att, Direction::Egress)?;
        let xdp = match mode {
            Mode::Tc => None,
            Mode::Xdp => match self.attach_xdp(&mut att, XdpMode::Driver) {
                Ok(()) => Some(IngressHook::XdpNative),
                Err(e) => {
                    log::warn!("{iface}: native XDP unavailable ({e}); using generic XDP");
                    self.attach_xdp(&mut att, XdpMode::Skb)?;
                    Some(IngressHook::XdpGeneric)
                }
            },
            Mode::Auto => match self.attach_xdp(&mut att, XdpMode::Driver) {
                Ok(()) => Some(IngressHook::XdpNative),
                Err(e) => {
                    log::info!("{iface}: native XDP unavailable ({e}); watching ingress with TC");
                    None
                }
            },
        };
        match xdp {
            Some(hook) => att.ingress = hook,
            None => self.attach_tc(&mut att, Direction::Ingress)?,
        }
        Ok(att)
    }

    /// Attaches a benchmark baseline on `iface`: a TC baseline on both
    /// directions, after whatever is there, and the do-nothing classifier
    /// after it (what `bpf_stats` figures are compared with in the same
    /// run); an XDP baseline alone on its hook.
    pub fn attach_baseline(
        &mut self,
        iface: &str,
        baseline: BaselineProgram,
    ) -> Result<Attachment, AttachError> {
        let mut att = Attachment {
            iface: iface.to_owned(),
            ifindex: ifindex(iface)?,
            ingress: IngressHook::Tc,
            links: Vec::new(),
            created_clsact: false,
        };
        if !baseline.is_tc() {
            // Native, where `--mode xdp` attaches first.
            self.attach_xdp_named(&mut att, XdpMode::Driver, baseline.program())?;
            att.ingress = IngressHook::XdpNative;
            return Ok(att);
        }
        for d in Direction::ALL {
            if baseline != BaselineProgram::Tc {
                self.attach_tc_named(&mut att, d, baseline.program())?;
            }
            self.attach_tc_named(&mut att, d, names::BENCH_TC_EMPTY)?;
        }
        Ok(att)
    }

    fn attach_tc(&mut self, att: &mut Attachment, direction: Direction) -> Result<(), AttachError> {
        let name = match direction {
            Direction::Ingress => names::TC_INGRESS,
            Direction::Egress => names::TC_EGRESS,
        };
        self.attach_tc_named(att, direction, name)
    }

    fn attach_tc_named(
        &mut self,
        att: &mut Attachment,
        direction: Direction,
        name: &'static str,
    ) -> Result<(), AttachError> {
        let kind = match direction {
            Direction::Ingress => TcAttachType::Ingress,
            Direction::Egress => TcAttachType::Egress,
        };
        let api = self.tc_api;
        let prog = self.classifier_loaded(name)?;
        let err = |source| AttachError::Attach {
            iface: att.iface.clone(),
            hook: name,
            source,
        };
        let id = match api {
            TcApi::Auto => prog.attach(&att.iface, kind),
            TcApi::Tcx => prog.attach_with_options(
                &att.iface,
                kind,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            ),
            TcApi::Netlink => prog.attach_with_options(
                &att.iface,
                kind,
                TcAttachOptions::Netlink(NlOptions::default()),
            ),
        }
        .map_err(err)?;
        let link = prog.take_link(id).map_err(err)?;
        att.links.push(Link::Tc(link));
        Ok(())
    }

    fn attach_xdp(&mut self, att: &mut Attachment, mode: XdpMode) -> Result<(), AttachError> {
        self.attach_xdp_named(att, mode, names::XDP)
    }

    fn attach_xdp_named(
        &mut self,
        att: &mut Attachment,
        mode: XdpMode,
        name: &'static str,
    ) -> Result<(), AttachError> {
        let prog = self.xdp_named(name)?;
        let err = |source| AttachError::Attach {
            iface: att.iface.clone(),
            hook: name,
            source,
        };
        let id = prog.attach(&att.iface, mode).map_err(err)?;
        let link = prog.take_link(id).map_err(err)?;
        att.links.push(Link::Xdp(link));
        Ok(())
    }
}

/// The live benchmark's baselines (`Datapath::attach_baseline`; what each
/// tells is said in the kernel's `bench.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineProgram {
    /// The do-nothing classifier on both TC hooks.
    Tc,
    /// One per-CPU counter on both TC hooks.
    TcCounter,
    /// Issue #10's naive classifier on both TC hooks.
    TcNaive,
    /// The do-nothing XDP program.
    Xdp,
    /// XDP reading the packet's first two cache lines and nothing else.
    XdpTouch,
    /// One per-CPU counter in XDP.
    XdpCounter,
    /// The naive classifier in XDP.
    XdpNaive,
}

impl BaselineProgram {
    /// The program's name in the object (whose run time `bpf_stats` gives).
    pub fn program(self) -> &'static str {
        match self {
            BaselineProgram::Tc => names::BENCH_TC_EMPTY,
            BaselineProgram::TcCounter => names::BENCH_TC_COUNTER,
            BaselineProgram::TcNaive => names::BENCH_TC_NAIVE,
            BaselineProgram::Xdp => names::BENCH_XDP_EMPTY,
            BaselineProgram::XdpTouch => names::BENCH_XDP_TOUCH,
            BaselineProgram::XdpCounter => names::BENCH_XDP_COUNTER,
            BaselineProgram::XdpNaive => names::BENCH_XDP_NAIVE,
        }
    }

    /// Attached on the TC hooks (else on XDP).
    pub fn is_tc(self) -> bool {
        matches!(
            self,
            BaselineProgram::Tc | BaselineProgram::TcCounter | BaselineProgram::TcNaive
        )
    }
}
