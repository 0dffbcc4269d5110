//! Heuristics over a tool definition's content, for tool-guard: text that addresses the model
//! with instructions ("tool poisoning"), and parameters that ask for secrets.
//!
//! A tool's description is read by the model as guidance, so a malicious or compromised server
//! hides instructions in it: "ignore previous instructions", "do not tell the user",
//! `<IMPORTANT>` blocks, requests to read `~/.ssh` or the environment and pass them as an
//! argument, and invisible Unicode that the user never sees but the model reads. None of this
//! is decidable; these are **heuristics**: a fixed, documented list of patterns ([`Rule`]),
//! each tested with examples that match and near misses that do not. They are meant to refuse
//! a tool for a human to review, not to prove one safe.
//!
//! Text is matched after normalisation: lower case, curly quotes made straight, invisible
//! characters removed (they are reported by [`Rule::HiddenCharacters`] on their own), and
//! words compared whole, so `ignore` does not match inside `ignored_paths`.

use std::fmt::Write as _;

use serde_json::Value;

/// One pattern family. [`Rule::name`] is the stable id settings and audit records use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// "ignore / disregard / forget (all) (the) previous / prior / above / system instructions
    /// / prompts / rules".
    IgnoreInstructions,
    /// Keeping something from the user: "do not tell the user", "don't mention this to the
    /// user", "do not mention that you …", "without telling the user", "hide this from the
    /// user", "the user must not know".
    ConcealFromUser,
    /// Prompt-style tags: `<IMPORTANT>`, `<system>`, `<instructions>`, `<secret>`, `<hidden>`,
    /// `<admin>`, `[INST]`, `<<SYS>>`, `<|im_start|>`.
    InstructionTag,
    /// Paths of credentials and keys: `~/.ssh`, `id_rsa`, `~/.aws`, `/etc/passwd`,
    /// `/etc/shadow`, `.netrc`, `.git-credentials`, `.npmrc`, `.pypirc`, `.docker/config.json`,
    /// `.kube/config`, `mcp.json`, `.cursor/`, a `.env` file.
    SensitivePath,
    /// Reading or sending secrets: `process.env`, `os.environ`, `printenv`, `getenv(`,
    /// `/proc/self/environ`, or a verb like read / send / include / pass / upload / copy /
    /// forward / dump / print / leak / share / attach / collect / exfiltrate followed by
    /// "(the / all / your) environment variables", "API keys", "SSH keys", "private keys",
    /// "access tokens", "credentials", "secrets" or "passwords".
    SecretAccess,
    /// Instructions about the conversation around the call: "before using / calling this
    /// tool", "otherwise the tool will not work".
    PreCallDirective,
    /// Invisible characters: zero-width characters, bidirectional controls, the Unicode tag
    /// block (U+E0000–U+E007F), supplementary variation selectors, the soft hyphen, and
    /// control characters other than tab and line breaks. A zero-width joiner between two
    /// non-ASCII characters (an emoji sequence) is allowed.
    HiddenCharacters,
    /// A parameter whose name or description asks for a secret (see [`is_secret_name`] and
    /// [`asks_for_secret`]), or whose `format` is `password`.
    SecretParameter,
}

impl Rule {
    /// Every rule, in order (tool-guard's `refuse_findings` accepts exactly their names).
    pub const ALL: [Rule; 8] = [
        Rule::IgnoreInstructions,
        Rule::ConcealFromUser,
        Rule::InstructionTag,
        Rule::SensitivePath,
        Rule::SecretAccess,
        Rule::PreCallDirective,
        Rule::HiddenCharacters,
        Rule::SecretParameter,
    ];

    /// The rule's stable id: `ignore-instructions`, `conceal-from-user`, `instruction-tag`,
    /// `sensitive-path`, `secret-access`, `pre-call-directive`, `hidden-characters`,
    /// `secret-parameter`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::IgnoreInstructions => "ignore-instructions",
            Rule::ConcealFromUser => "conceal-from-user",
            Rule::InstructionTag => "instruction-tag",
            Rule::SensitivePath => "sensitive-path",
            Rule::SecretAccess => "secret-access",
            Rule::PreCallDirective => "pre-call-directive",
            Rule::HiddenCharacters => "hidden-characters",
            Rule::SecretParameter => "secret-parameter",
        }
    }
}

/// One match in a tool definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
    pub rule: Rule,
    /// Where, as a JSON pointer into the tool (`/description`,
    /// `/inputSchema/properties/notes/description`).
    pub at: String,
}

/// The instruction-like rules that match `text` (each at most once, in [`Rule`] order).
pub fn scan_text(text: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    if has_hidden_characters(text) {
        rules.push(Rule::HiddenCharacters);
    }
    let lower = normalise(text);
    let words = words(&lower);
    let checks: [(Rule, bool); 6] = [
        (Rule::IgnoreInstructions, any_phrase(&words, IGNORE)),
        (Rule::ConcealFromUser, any_phrase(&words, CONCEAL)),
        (Rule::InstructionTag, has_instruction_tag(&lower)),
        (Rule::SensitivePath, has_sensitive_path(&lower)),
        (Rule::SecretAccess, ENV_MARKERS.iter().any(|m| lower.contains(m)) || any_phrase(&words, SECRET_ACCESS)),
        (Rule::PreCallDirective, any_phrase(&words, PRE_CALL)),
    ];
    rules.extend(checks.into_iter().filter(|(_, hit)| *hit).map(|(rule, _)| rule));
    rules.sort_by_key(|r| *r as u8);
    rules
}

/// Every finding in a tool definition: the instruction rules over its `description` and
/// `title`, every `description` and `title` in its `inputSchema`, and its name and property
/// names (hidden characters only); [`Rule::SecretParameter`] over its parameters.
pub fn scan_tool(tool: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(name) = tool.get("name").and_then(Value::as_str)
        && has_hidden_characters(name)
    {
        findings.push(Finding { rule: Rule::HiddenCharacters, at: "/name".into() });
    }
    for field in ["description", "title"] {
        if let Some(text) = tool.get(field).and_then(Value::as_str) {
            findings.extend(scan_text(text).into_iter().map(|rule| Finding { rule, at: format!("/{field}") }));
        }
    }
    if let Some(schema) = tool.get("inputSchema") {
        walk_schema(schema, &mut "/inputSchema".to_owned(), &mut findings);
    }
    findings
}

fn walk_schema(value: &Value, at: &mut String, findings: &mut Vec<Finding>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                let len = at.len();
                let _ = write!(at, "/{}", key.replace('~', "~0").replace('/', "~1"));
                match child {
                    Value::String(text) if key == "description" || key == "title" => {
                        findings.extend(scan_text(text).into_iter().map(|rule| Finding { rule, at: at.clone() }));
                    }
                    Value::Object(properties) if key == "properties" => {
                        for (name, schema) in properties {
                            let len = at.len();
                            let _ = write!(at, "/{}", name.replace('~', "~0").replace('/', "~1"));
                            if has_hidden_characters(name) {
                                findings.push(Finding { rule: Rule::HiddenCharacters, at: at.clone() });
                            }
                            if is_secret_parameter(name, schema) {
                                findings.push(Finding { rule: Rule::SecretParameter, at: at.clone() });
                            }
                            walk_schema(schema, at, findings);
                            at.truncate(len);
                        }
                    }
                    _ => walk_schema(child, at, findings),
                }
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                let _ = write!(at, "/{i}");
                walk_schema(item, at, findings);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

fn is_secret_parameter(name: &str, schema: &Value) -> bool {
    is_secret_name(name)
        || schema.get("description").and_then(Value::as_str).is_some_and(asks_for_secret)
        || schema.get("format").and_then(Value::as_str) == Some("password")
}

// ---------------------------------------------------------------------------------------
// Secrets in parameters
// ---------------------------------------------------------------------------------------

/// Words that name a secret by themselves.
const SECRET_WORDS: [&str; 16] = [
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "authtoken",
    "accesstoken",
    "bearertoken",
    "refreshtoken",
];

/// Two-word names of secrets.
const SECRET_PAIRS: [(&str, &str); 12] = [
    ("api", "key"),
    ("api", "keys"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
    ("client", "secret"),
    ("signing", "key"),
    ("encryption", "key"),
    ("session", "cookie"),
    ("ssh", "key"),
    ("access", "token"),
    ("refresh", "token"),
];

/// Whether a parameter's name asks for a secret. The name is split into words at `_`, `-`,
/// spaces, dots and camel-case humps (`apiKey` → `api key`, `APIKey` → `api key`); it asks for
/// a secret when a word is one of `password`, `passwd`, `passphrase`, `secret(s)`,
/// `credential(s)`, `apikey`, `privatekey`, …, when two words are `api key`, `private key`,
/// `access key`, `secret key`, `client secret`, `signing key`, `encryption key`, `session
/// cookie`, `ssh key`, …, or when the last word is `token` (`access_token`, `github_token`,
/// `token`; but not `max_tokens`, `token_count` or `tokenizer`).
pub fn is_secret_name(name: &str) -> bool {
    let words = name_words(name);
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    secret_words(&refs) || refs.last() == Some(&"token")
}

/// Whether a parameter's description asks for a secret: the words `password(s)`, `passwd`,
/// `passphrase`, `credential(s)`, `apikey`, or the pairs `api key`, `private key`, `secret
/// key`, `access token`, `refresh token`, `bearer token`, `auth token`, `ssh key`, `client
/// secret`, `session cookie`. `secret` or `token` alone are not enough in prose ("the number
/// of tokens", "a secret Santa list").
pub fn asks_for_secret(description: &str) -> bool {
    let lower = normalise(description);
    let words = words(&lower);
    let prose_words = ["password", "passwords", "passwd", "passphrase", "credential", "credentials", "apikey"];
    words.iter().any(|w| prose_words.contains(w))
        || words.windows(2).any(|pair| {
            SECRET_PAIRS.contains(&(pair[0], pair[1]))
                || matches!((pair[0], pair[1]), ("bearer" | "auth", "token") | ("secret", "keys"))
        })
}

fn secret_words(words: &[&str]) -> bool {
    words.iter().any(|w| SECRET_WORDS.contains(w)) || words.windows(2).any(|p| SECRET_PAIRS.contains(&(p[0], p[1])))
}

/// A name's words, lower case: split at non-alphanumerics and camel-case humps.
fn name_words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let hump = c.is_uppercase()
            && i > 0
            && (chars[i - 1].is_lowercase()
                || chars[i - 1].is_ascii_digit()
                || (chars[i - 1].is_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_lowercase())));
        if hump && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

// ---------------------------------------------------------------------------------------
// Instruction-like text
// ---------------------------------------------------------------------------------------

/// A phrase: slots of alternative words, `""` making a slot optional.
type Phrase = &'static [&'static [&'static str]];

const IGNORE: &[Phrase] = &[&[
    &["ignore", "disregard", "forget", "override", "bypass"],
    &["all", "any", ""],
    &["the", "your", "of", ""],
    &["previous", "prior", "above", "earlier", "preceding", "former", "system", "other", "original"],
    &["instructions", "instruction", "prompts", "prompt", "rules", "directions", "guidelines", "messages"],
]];

const USER: &[&str] = &["user", "users", "human"];
const TELL: &[&str] = &["tell", "inform", "mention", "show", "reveal", "notify", "alert", "disclose"];

const CONCEAL: &[Phrase] = &[
    &[
        &["do", "does", "must", "should"],
        &["not"],
        TELL,
        &["this", "it", "anything", "that", ""],
        &["to", ""],
        &["the", ""],
        USER,
    ],
    // "Do not mention that you first need to read the file": hiding the model's own steps.
    &[&["do", "does", "must", "should"], &["not"], TELL, &["that", "this", "it"], &["you"]],
    &[&["don't", "dont", "never"], TELL, &["that", "this", "it"], &["you"]],
    &[&["don't", "dont", "never"], TELL, &["this", "it", "anything", "that", ""], &["to", ""], &["the", ""], USER],
    &[&["without"], &["telling", "informing", "notifying", "alerting", "asking", "showing"], &["the", ""], USER],
    &[&["hide", "conceal"], &["this", "it", "that", "these", ""], &["from"], &["the", ""], USER],
    &[&["the"], &["user"], &["must", "should"], &["not", "never"], &["know", "see", "notice", "be"]],
];

const SECRET_VERBS: &[&str] = &[
    "read",
    "send",
    "include",
    "pass",
    "upload",
    "copy",
    "forward",
    "dump",
    "print",
    "leak",
    "share",
    "attach",
    "collect",
    "exfiltrate",
    "append",
    "embed",
];

const SECRET_ACCESS: &[Phrase] = &[
    &[
        SECRET_VERBS,
        &["all", "any", "the", "your", "its", "their", ""],
        &["system", "shell", "user's", "users", ""],
        &["environment", "env"],
        &["variables", "variable", "vars", "var"],
    ],
    &[
        SECRET_VERBS,
        &["all", "any", "the", "your", "its", "their", ""],
        &["user's", "users", ""],
        &["api", "ssh", "private", "secret", "access", "aws"],
        &["keys", "key", "tokens", "token"],
    ],
    &[
        SECRET_VERBS,
        &["all", "any", "the", "your", "its", "their", ""],
        &["user's", "users", "stored", "saved", ""],
        &["credentials", "secrets", "passwords", "password"],
    ],
];

const PRE_CALL: &[Phrase] = &[
    &[
        &["before", "prior"],
        &["to", ""],
        &["you", ""],
        &["use", "using", "call", "calling", "invoke", "invoking", "run", "running"],
        &["this", "the", "any", ""],
        &["tool", "tools", "function"],
    ],
    &[
        &["otherwise"],
        &["the", "this", ""],
        &["tool", "function"],
        &["will", "won't", "would", "does", "doesn't", "cannot", "can't"],
    ],
];

/// Substrings that access the environment by themselves.
const ENV_MARKERS: [&str; 6] = ["process.env", "os.environ", "printenv", "getenv(", "/proc/self/environ", "$env:"];

/// Substrings naming files that hold credentials.
const SENSITIVE_PATHS: [&str; 17] = [
    "~/.ssh",
    ".ssh/",
    "id_rsa",
    "id_ed25519",
    "~/.aws",
    ".aws/credentials",
    "/etc/passwd",
    "/etc/shadow",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".docker/config.json",
    ".kube/config",
    "mcp.json",
    ".cursor/",
    "~/.config/gcloud",
];

/// Tags that frame text as instructions to the model.
const INSTRUCTION_TAGS: [&str; 9] =
    ["important", "system", "instructions", "instruction", "secret", "hidden", "admin", "system-prompt", "sys"];

fn has_sensitive_path(lower: &str) -> bool {
    if SENSITIVE_PATHS.iter().any(|p| lower.contains(p)) {
        return true;
    }
    // `.env` as a file name: not `.environment`, not `process.env` (that is SecretAccess).
    lower.match_indices(".env").any(|(i, _)| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + 4..].chars().next();
        before.is_none_or(|c| c.is_whitespace() || "/~'\"`(".contains(c))
            && after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

fn has_instruction_tag(lower: &str) -> bool {
    if ["[inst]", "[/inst]", "<<sys>>", "<|im_start|>", "<|system|>"].iter().any(|t| lower.contains(t)) {
        return true;
    }
    lower.match_indices('<').any(|(i, _)| {
        let rest = lower[i + 1..].trim_start().trim_start_matches('/').trim_start();
        let end = rest.find('>').unwrap_or(rest.len());
        let name = rest[..end].trim();
        end < rest.len() && INSTRUCTION_TAGS.contains(&name)
    })
}

fn any_phrase(words: &[&str], phrases: &[Phrase]) -> bool {
    phrases.iter().any(|phrase| (0..words.len()).any(|start| matches_at(words, start, phrase)))
}

fn matches_at(words: &[&str], at: usize, phrase: &[&[&str]]) -> bool {
    let Some((slot, rest)) = phrase.split_first() else { return true };
    let here = words.get(at).is_some_and(|w| slot.contains(w)) && matches_at(words, at + 1, rest);
    here || (slot.contains(&"") && matches_at(words, at, rest))
}

/// Lower case, curly quotes straightened, invisible characters removed.
fn normalise(text: &str) -> String {
    text.chars()
        .filter(|&c| !is_invisible(c))
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02bc}' => '\'',
            '\u{201c}' | '\u{201d}' => '"',
            other => other,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Words: runs of letters, digits and apostrophes.
fn words(lower: &str) -> Vec<&str> {
    lower.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).collect()
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}'
        | '\u{e0000}'..='\u{e007f}'
        | '\u{e0100}'..='\u{e01ef}')
        || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn has_hidden_characters(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        if c == '\u{200d}' {
            // A zero-width joiner inside an emoji sequence (👩‍💻) is how emoji are written.
            let emoji_side = |n: Option<&char>| n.is_some_and(|n| !n.is_ascii() && !is_invisible(*n));
            return !(i > 0 && emoji_side(chars.get(i - 1)) && emoji_side(chars.get(i + 1)));
        }
        is_invisible(c)
    })
}

#[cfg(test)]
mod tests;
