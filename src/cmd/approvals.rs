//! `portcullis approvals`: list, show, approve and reject pending approvals in the store
//! the config names (the SQLite file, or the PostgreSQL database replicas share). Works
//! beside running servers (the store is shared safely).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use portcullis_host::Config;
use portcullis_host::approval::{Approval, ApprovalState};
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
        ApprovalsAction::Approve { id, by } => {
            vec![settle(store.as_ref(), audit.as_deref(), id, Settlement::Approve { by }, "cli", now)?]
        }
        ApprovalsAction::Reject { id, by, note } => {
            let settlement = Settlement::Reject { by, note: note.as_deref() };
            vec![settle(store.as_ref(), audit.as_deref(), id, settlement, "cli", now)?]
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

/// One approval on one line: id, state, who asked, what, why, for whom to approve.
fn line(a: &Approval) -> String {
    let state = serde_json::to_value(a.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let who = match &a.on_behalf_of {
        Some(user) => format!("{}:{} for {user}", a.principal_kind, a.principal_id),
        None => format!("{}:{}", a.principal_kind, a.principal_id),
    };
    format!("{}  {state:<8}  {who}  {}  ({}; group {}; policy {})", a.id, a.request_line, a.reason, a.group, a.policy)
}
