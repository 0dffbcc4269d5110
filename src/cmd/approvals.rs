//! `portcullis approvals`: list, show, approve and reject pending approvals in the store
//! the config names (the SQLite file, or the PostgreSQL database replicas share). Works
//! beside running servers (the store is shared safely).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use portcullis_host::Config;
use portcullis_host::approval::{Approval, ApprovalState, Decider};
use portcullis_host::gate::{Settlement, settle};

use crate::cli::{ApprovalsAction, ApprovalsArgs, Format};

/// Runs one approvals action.
pub fn run(args: &ApprovalsArgs) -> Result<ExitCode> {
    let config = Config::read(&args.config)?;
    let Some(store) = crate::serve::live::open_approvals(&config, &args.config)? else {
        bail!(
            "{} has no [approvals] section, so there is no approval store; add `[approvals] store = \"approvals.sqlite\"` \
             (or `backend = \"postgres\"` with `url_env`, see docs/replicas.md)",
            args.config.display()
        );
    };
    // Approvals and rejections go to the same audit log as the server's decisions.
    let audit = crate::serve::live::open_audit(&config, &args.config)?;
    let now = portcullis_host::now_ms();
    if let ApprovalsAction::Approve { id, .. } | ApprovalsAction::Reject { id, .. } = &args.action
        && crate::serve::admin::several(id)
    {
        bail!("{}", crate::serve::admin::SEVERAL);
    }
    let shown: Vec<Approval> = match &args.action {
        ApprovalsAction::List { state } => {
            let state = state
                .as_deref()
                .map(|s| {
                    serde_json::from_value::<ApprovalState>(serde_json::json!(s)).with_context(|| {
                        format!("unknown state `{s}`; use pending, approved, rejected, used or expired")
                    })
                })
                .transpose()?;
            store.list(state, now)?
        }
        ApprovalsAction::Show { id } => match store.get(id, now)? {
            Some(approval) => vec![approval],
            None => bail!("no approval `{id}` in the store"),
        },
        ApprovalsAction::Approve { id, by, note } => {
            let decider = cli_decider(by.as_deref());
            let settlement = Settlement::Approve { by: &decider, note: note.as_deref() };
            vec![settle(store.as_ref(), audit.as_deref(), None, id, settlement, "cli", now)?]
        }
        ApprovalsAction::Reject { id, by, note } => {
            let decider = cli_decider(by.as_deref());
            let settlement = Settlement::Reject { by: &decider, note: note.as_deref() };
            vec![settle(store.as_ref(), audit.as_deref(), None, id, settlement, "cli", now)?]
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
        Format::Text => {
            if shown.is_empty() {
                println!("no approvals");
            }
            for approval in &shown {
                println!("{}", line(approval));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who decides from the command line: the operator's operating-system user, as
/// `cli:<user>` (the command works on the store directly, so it is the operator's tool; an
/// approver's identity is proven through the admin API instead).
fn cli_decider(by: Option<&str>) -> Decider {
    let user = os_user();
    if let Some(by) = by {
        eprintln!("note: --by {by:?} is ignored; the decision is recorded as cli:{user} (the operating-system user)");
    }
    Decider::cli(&user)
}

/// The name of the user running this process: the real uid's entry in `/etc/passwd`, else
/// `$USER`/`$LOGNAME`, else `uid:N`.
fn os_user() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            let uid = meta.uid();
            let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
                passwd.lines().find_map(|line| {
                    let mut fields = line.split(':');
                    let name = fields.next()?;
                    let id = fields.nth(1)?;
                    (id.parse::<u32>().ok() == Some(uid)).then(|| name.to_owned())
                })
            });
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                return name;
            }
            return std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| format!("uid:{uid}"));
        }
    }
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

/// One approval on one line: id, state, who asked, what, why, for whom to approve.
fn line(a: &Approval) -> String {
    let state = serde_json::to_value(a.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let who = match &a.on_behalf_of {
        Some(user) => format!("{}:{} for {user}", a.principal_kind, a.principal_id),
        None => format!("{}:{}", a.principal_kind, a.principal_id),
    };
    format!("{}  {state:<8}  {who}  {}  ({}; group {}; policy {})", a.id, a.request_line, a.reason, a.group, a.policy)
}
