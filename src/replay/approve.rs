//! The approver's side in replay (`--approve-as GROUP=KIND:ID`, `--approvals FILE`): every
//! entry held for approval is answered as scripted, by a principal the config's
//! `[approvals.groups]` must let decide (membership and four eyes), and the entry is then
//! retried with the approvals as a caller would: evaluated again, its approvals redeemed in
//! an approval store of its own (in memory), and passed on with the approved verdict.
//!
//! Nothing touches the config's own approval store.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use portcullis_host::Exchange;
use portcullis_host::approval::{
    ApprovalStore, ApproverGroups, Decider, MemoryStore, NewApproval, Redemption, Shown, request_digest,
};
use portcullis_host::decision::{Decision, DecisionKind};
use portcullis_host::exchange::{Principal, PrincipalKind};
use portcullis_host::gate::{Gate, Identity, Passage, RequestCheck};
use portcullis_host::gate::{Settlement, settle};
use serde::{Deserialize, Serialize};

use super::select::{Compiled, Selector};

/// What a scripted approver does with an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Approve,
    Reject,
}

/// How one approval is answered: by whom and how, or by nobody (`wait = true`).
#[derive(Debug, Clone)]
struct Answer {
    /// `None`: nobody answers; the request waits until its approval expires.
    decision: Option<(Verb, Principal)>,
    note: Option<String>,
}

/// A `[[decision]]` of a decisions file: for the entries it selects (and the group, when
/// given), this answer.
#[derive(Debug, Clone)]
struct Rule {
    group: Option<String>,
    select: Compiled,
    answer: Answer,
}

/// Who answers which approvals in a replay.
#[derive(Debug)]
pub struct ApprovalScript {
    /// The config's `[approvals.groups]`.
    groups: ApproverGroups,
    /// Per group: `--approve-as`, then the file's `[groups]`.
    by_group: BTreeMap<String, Answer>,
    /// The file's `[[decision]]`s, in order: the first that matches wins.
    rules: Vec<Rule>,
}

/// A decisions file (`--approvals FILE`, TOML or, for `.json`, JSON).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionsFile {
    /// Per approver group, who answers its approvals.
    #[serde(default)]
    groups: BTreeMap<String, AnswerSpec>,
    /// Answers for selected entries, before the groups' ones.
    #[serde(default, rename = "decision")]
    decisions: Vec<RuleSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerSpec {
    /// `KIND:ID` of the approver who approves.
    #[serde(default)]
    approve: Option<String>,
    /// `KIND:ID` of the approver who rejects.
    #[serde(default)]
    reject: Option<String>,
    /// Nobody answers.
    #[serde(default)]
    wait: bool,
    /// The approver's scopes (for groups that admit by scope).
    #[serde(default)]
    scopes: Vec<String>,
    /// The approver's claims (for groups that admit by claim).
    #[serde(default)]
    claims: BTreeMap<String, String>,
    /// The approver's note.
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    #[serde(default)]
    select: Selector,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    approve: Option<String>,
    #[serde(default)]
    reject: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    #[serde(default)]
    note: Option<String>,
}

impl AnswerSpec {
    fn answer(&self, key: &str) -> Result<Answer> {
        let decision = match (&self.approve, &self.reject, self.wait) {
            (Some(p), None, false) => Some((Verb::Approve, self.principal(p, key)?)),
            (None, Some(p), false) => Some((Verb::Reject, self.principal(p, key)?)),
            (None, None, true) => None,
            _ => bail!("{key}: give exactly one of `approve = \"KIND:ID\"`, `reject = \"KIND:ID\"` or `wait = true`"),
        };
        if decision.is_none() && (!self.scopes.is_empty() || !self.claims.is_empty() || self.note.is_some()) {
            bail!("{key}: `wait = true` takes no `scopes`, `claims` or `note`");
        }
        Ok(Answer { decision, note: self.note.clone() })
    }

    fn principal(&self, text: &str, key: &str) -> Result<Principal> {
        let mut principal = parse_principal(text).with_context(|| key.to_owned())?;
        principal.scopes.clone_from(&self.scopes);
        principal.claims = self.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(principal)
    }
}

/// `KIND:ID` (user, service or agent) as an approver principal.
pub fn parse_principal(text: &str) -> Result<Principal> {
    let Some((kind, id)) = text.split_once(':').filter(|(_, id)| !id.trim().is_empty()) else {
        bail!("`{text}`: expected KIND:ID, e.g. user:carol");
    };
    let kind = match kind {
        "user" => PrincipalKind::User,
        "service" => PrincipalKind::Service,
        "agent" => PrincipalKind::Agent,
        other => bail!("`{text}`: unknown kind `{other}`; an approver is user:ID, service:ID or agent:ID"),
    };
    Ok(Principal {
        kind,
        id: id.trim().to_owned(),
        scopes: Vec::new(),
        claims: Vec::new(),
        on_behalf_of: None,
        credential_id: Some("replay-approver".into()),
    })
}

impl ApprovalScript {
    /// The script from `--approve-as GROUP=KIND:ID` flags and an optional decisions file,
    /// for a config whose `[approvals.groups]` are `groups`. A flag overrides the file's
    /// `[groups]` entry for its group; the file's `[[decision]]`s come first.
    pub fn new(groups: ApproverGroups, approve_as: &[String], file: Option<&Path>) -> Result<ApprovalScript> {
        let mut script = ApprovalScript { groups, by_group: BTreeMap::new(), rules: Vec::new() };
        if let Some(path) = file {
            script.read_file(path)?;
        }
        for flag in approve_as {
            let Some((group, principal)) = flag.split_once('=').filter(|(g, _)| !g.trim().is_empty()) else {
                bail!("--approve-as {flag}: expected GROUP=KIND:ID, e.g. finance=user:carol");
            };
            let principal = parse_principal(principal).with_context(|| format!("--approve-as {flag}"))?;
            script
                .by_group
                .insert(group.trim().to_owned(), Answer { decision: Some((Verb::Approve, principal)), note: None });
        }
        Ok(script)
    }

    fn read_file(&mut self, path: &Path) -> Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--approvals: cannot read {}", path.display()))?;
        let file: DecisionsFile = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--approvals {}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("--approvals {}: {e}", path.display()))?
        };
        let where_ = path.display();
        for (group, spec) in &file.groups {
            self.by_group.insert(group.clone(), spec.answer(&format!("{where_}: [groups.{group}]"))?);
        }
        for (n, rule) in file.decisions.into_iter().enumerate() {
            let key = format!("{where_}: [[decision]] #{}", n + 1);
            let spec = AnswerSpec {
                approve: rule.approve,
                reject: rule.reject,
                wait: rule.wait,
                scopes: rule.scopes,
                claims: rule.claims,
                note: rule.note,
            };
            let answer = spec.answer(&key)?;
            let select = rule.select.compile().map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            self.rules.push(Rule { group: rule.group, select, answer });
        }
        Ok(())
    }

    /// How the approval of `group` for this entry is answered, if anyone answers it.
    fn answer_for(&self, group: &str, source: &str, index: usize, passage: &Passage) -> Option<&Answer> {
        self.rules
            .iter()
            .find(|r| r.group.as_deref().is_none_or(|g| g == group) && r.select.matches(source, index, Some(passage)))
            .map(|r| &r.answer)
            .or_else(|| self.by_group.get(group))
    }

    /// Answers the approvals a held entry waits for and retries it; `None` when the entry
    /// was not held for approval in its request phase.
    pub fn round(
        &self,
        gate: &Gate,
        exchange: &Exchange,
        identity: &Identity,
        (source, index): (&str, usize),
        passage: &Passage,
    ) -> Option<ApprovalRound> {
        let check = passage.request.as_ref()?;
        let verdict = &check.verdict;
        if !matches!(verdict.decision, Decision::RequireApproval(_)) {
            return None;
        }
        let now_ms = portcullis_host::now_ms();
        let mut request = exchange.request.clone();
        if gate.identify(&mut request, identity).is_err() {
            return None;
        }
        let asked = verdict.approvals_asked();
        let holding = verdict.policies.iter().filter(|p| p.decision == DecisionKind::RequireApproval).count();
        let mut groups: Vec<String> = Vec::new();
        for (_, approval) in &asked {
            if !groups.contains(&approval.approver_group) {
                groups.push(approval.approver_group.clone());
            }
        }
        if asked.is_empty() || asked.len() != holding {
            return Some(ApprovalRound::refused(
                Vec::new(),
                "a policy asked for an approval without naming its group, so no approval can let it through",
            ));
        }
        // Each entry has a store of its own: identical requests in a capture must not share
        // (or race for) one pending approval.
        let store = MemoryStore::new();
        let digest = request_digest(&request);
        let mut answers = Vec::with_capacity(groups.len());
        let mut ids = Vec::with_capacity(groups.len());
        for group in &groups {
            let ttl_seconds =
                asked.iter().filter(|(_, a)| &a.approver_group == group).map(|(_, a)| a.ttl_seconds).min().unwrap_or(0);
            let new = NewApproval {
                digest: digest.clone(),
                principal: request.principal.clone(),
                policy: asked
                    .iter()
                    .filter(|(_, a)| &a.approver_group == group)
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: asked
                    .iter()
                    .find(|(_, a)| &a.approver_group == group)
                    .map(|(_, a)| a.reason.clone())
                    .unwrap_or_default(),
                group: group.clone(),
                request_line: format!("{} {} {}", request.method, request.host(), request.path),
                shown: Shown::of(&request, false),
                ttl_ms: u64::from(ttl_seconds) * 1000,
                now_ms,
            };
            let approval = match store.create(new) {
                Ok(a) => a,
                Err(e) => return Some(ApprovalRound::refused(answers, &format!("the approval store failed: {e}"))),
            };
            ids.push(approval.id.clone());
            answers.push(self.answer_one(&store, &approval, (source, index), passage, now_ms));
        }
        let outcome = [Outcome::Rejected, Outcome::NotAllowed, Outcome::NoDecider]
            .into_iter()
            .find(|o| answers.iter().any(|a| a.decision.outcome() == Some(*o)));
        if let Some(outcome) = outcome {
            return Some(ApprovalRound { groups: answers, outcome, reason: None, passage: None });
        }
        Some(retry(gate, exchange, identity, &store, &ids, passage, answers, now_ms))
    }

    /// One group's approval answered as scripted: decided when the script names someone the
    /// group lets decide, reported when it names someone it does not.
    fn answer_one(
        &self,
        store: &MemoryStore,
        approval: &portcullis_host::approval::Approval,
        (source, index): (&str, usize),
        passage: &Passage,
        now_ms: u64,
    ) -> GroupAnswer {
        let group = approval.group.clone();
        let Some(answer) = self.answer_for(&group, source, index, passage) else {
            return GroupAnswer { group, decision: GroupDecision::NoDecider, by: None, note: None, reason: None };
        };
        let Some((verb, principal)) = &answer.decision else {
            return GroupAnswer { group, decision: GroupDecision::NoDecider, by: None, note: None, reason: None };
        };
        let by = Some(format!("{}:{}", principal.kind.as_str(), principal.id));
        if let Err(not) = self.groups.may_decide(principal, approval) {
            return GroupAnswer {
                group,
                decision: GroupDecision::NotAllowed { code: not.code() },
                by,
                note: None,
                reason: Some(not.to_string()),
            };
        }
        let decider = Decider::principal(principal);
        let note = answer.note.as_deref();
        let settlement = match verb {
            Verb::Approve => Settlement::Approve { by: &decider, note },
            Verb::Reject => Settlement::Reject { by: &decider, note },
        };
        match settle(store, None, None, &approval.id, settlement, "replay", now_ms) {
            Ok(_) => GroupAnswer {
                group,
                decision: if *verb == Verb::Approve { GroupDecision::Approved } else { GroupDecision::Rejected },
                by,
                note: answer.note.clone(),
                reason: None,
            },
            Err(e) => GroupAnswer {
                group,
                decision: GroupDecision::NoDecider,
                by,
                note: None,
                reason: Some(format!("the decision could not be stored: {e}")),
            },
        }
    }
}

/// The approved retry: the entry evaluated again, its approvals redeemed for that retry,
/// and the approved verdict applied (then the response phase, when one was recorded).
#[allow(clippy::too_many_arguments)]
fn retry(
    gate: &Gate,
    exchange: &Exchange,
    identity: &Identity,
    store: &MemoryStore,
    ids: &[String],
    held: &Passage,
    answers: Vec<GroupAnswer>,
    now_ms: u64,
) -> ApprovalRound {
    let mut request = exchange.request.clone();
    if let Err(e) = gate.identify(&mut request, identity) {
        return ApprovalRound::refused(answers, &format!("the retry failed authentication: {}", e.reason));
    }
    let digest = request_digest(&request);
    let check = gate.check_request(&mut request);
    let mut passage = held.clone();
    let check = if matches!(check.verdict.decision, Decision::RequireApproval(_)) {
        let mut groups: Vec<String> = Vec::new();
        for (_, a) in check.verdict.approvals_asked() {
            if !groups.contains(&a.approver_group) {
                groups.push(a.approver_group.clone());
            }
        }
        let redemption = Redemption { ids, digest: &digest, principal: &request.principal, groups: Some(&groups) };
        if let Err(e) = store.redeem_all(&redemption, now_ms) {
            return ApprovalRound::refused(answers, &format!("the retry's approvals were refused: {e}"));
        }
        let verdict = check.verdict.approved_by(&groups);
        let mut approved = RequestCheck { verdict, applied: None, redaction_error: None };
        if approved.verdict.is_allowed() && !approved.verdict.redactions().is_empty() {
            match approved.verdict.apply_to_request(&mut request) {
                Ok(applied) => approved.applied = Some(applied),
                Err(e) => approved.redaction_error = Some(e.to_string()),
            }
        }
        approved
    } else {
        // Decided otherwise this time (a policy that keeps state): no approval is used.
        check
    };
    let forward = check.may_forward();
    passage.forwarded_request = check.applied.as_ref().filter(|a| !a.is_empty()).map(|_| request.clone());
    passage.request = Some(check);
    passage.response = None;
    passage.returned_response = None;
    if !forward {
        let reason = passage.request.as_ref().map(refusal_of).unwrap_or_default();
        let mut round = ApprovalRound::refused(answers, &reason);
        round.passage = Some(Box::new(passage));
        return round;
    }
    if let Some(mut response) = exchange.response.clone() {
        let check = gate.check_response(&request, &mut response);
        if check.applied.as_ref().is_some_and(|a| !a.is_empty()) {
            passage.returned_response = Some(response);
        }
        passage.response = Some(check);
    }
    ApprovalRound { groups: answers, outcome: Outcome::Forwarded, reason: None, passage: Some(Box::new(passage)) }
}

/// Why an approved retry is still not forwarded.
fn refusal_of(check: &RequestCheck) -> String {
    if let Some(e) = &check.redaction_error {
        return format!("redaction failed: {e}");
    }
    match &check.verdict.decision {
        Decision::Deny(d) => format!("deny {} {}: {}", d.status, d.code, d.reason),
        Decision::RequireApproval(a) => format!("still waits for approver group {}", a.approver_group),
        _ => String::new(),
    }
}

/// What became of an entry held for approval once the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every group approved and the retry went through.
    Forwarded,
    /// An approver rejected it.
    Rejected,
    /// The script named an approver its group does not let decide (not a member, four eyes).
    NotAllowed,
    /// Nobody answered a group's approval: it waits until it expires.
    NoDecider,
    /// Approved, and still refused (the retry was denied, or a redaction failed).
    Refused,
}

impl Outcome {
    /// The outcome as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::NotAllowed => "not-allowed",
            Outcome::NoDecider => "no-decider",
            Outcome::Refused => "refused",
        }
    }
}

/// How one group's approval was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum GroupDecision {
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// The named approver may not decide (`code`: `not-an-approver` or `four-eyes`).
    NotAllowed {
        /// The admin API's problem code for it.
        code: &'static str,
    },
    /// Nobody answered.
    NoDecider,
}

impl GroupDecision {
    fn outcome(self) -> Option<Outcome> {
        match self {
            GroupDecision::Approved => None,
            GroupDecision::Rejected => Some(Outcome::Rejected),
            GroupDecision::NotAllowed { .. } => Some(Outcome::NotAllowed),
            GroupDecision::NoDecider => Some(Outcome::NoDecider),
        }
    }

    /// `approved`, `rejected`, `not-allowed`, `no-decider`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupDecision::Approved => "approved",
            GroupDecision::Rejected => "rejected",
            GroupDecision::NotAllowed { .. } => "not-allowed",
            GroupDecision::NoDecider => "no-decider",
        }
    }
}

/// One approver group's answer for one entry.
#[derive(Debug, Clone, Serialize)]
pub struct GroupAnswer {
    /// The group the entry waited for.
    pub group: String,
    /// What was done.
    #[serde(flatten)]
    pub decision: GroupDecision,
    /// The scripted approver, `KIND:ID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The approver's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the approver may not decide (or the decision failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An entry held for approval, answered by the script.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRound {
    /// Each group it waited for, and its answer.
    pub groups: Vec<GroupAnswer>,
    /// The final outcome.
    pub outcome: Outcome,
    /// Why an approved retry was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approved retry's passage (when every group approved); reports show its
    /// signature.
    #[serde(skip)]
    pub passage: Option<Box<Passage>>,
}

impl ApprovalRound {
    fn refused(groups: Vec<GroupAnswer>, reason: &str) -> ApprovalRound {
        ApprovalRound { groups, outcome: Outcome::Refused, reason: Some(reason.to_owned()), passage: None }
    }

    /// `finance (approved by user:carol)`, for each group, joined.
    pub fn waited_for(&self) -> String {
        self.groups
            .iter()
            .map(|g| match (&g.decision, &g.by) {
                (GroupDecision::NoDecider, _) => format!("{}: nobody decided", g.group),
                (GroupDecision::NotAllowed { code }, Some(by)) => format!("{}: {by} may not decide ({code})", g.group),
                (d, Some(by)) => format!("{}: {} by {by}", g.group, d.as_str()),
                (d, None) => format!("{}: {}", g.group, d.as_str()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `finance: approved by user:carol → forwarded`, as the text report lists it.
    pub fn line(&self) -> String {
        let mut line = format!("{} → {}", self.waited_for(), self.outcome.as_str());
        if let Some(passage) = &self.passage {
            let after = super::signature::Signature::of(passage);
            if self.outcome == Outcome::Forwarded && after.overall() != DecisionKind::Allow {
                line = format!("{line} ({})", after.short());
            }
        }
        if let Some(reason) = &self.reason {
            line = format!("{line}: {reason}");
        }
        line
    }
}
