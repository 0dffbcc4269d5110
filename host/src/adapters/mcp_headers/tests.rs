//! The request-metadata checks, with the specification's own examples.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    map
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "ExampleClient", "version": "1.0.0"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// The specification's `tools/call` example (Standard Request Headers).
fn get_weather() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"location": "Seattle, WA"}, "_meta": meta()}
    })
}

/// The specification's `execute_sql` tool (Custom Headers from Tool Parameters).
fn execute_sql_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "region": {"type": "string", "description": "The region to execute the query in", "x-mcp-header": "Region"},
            "query": {"type": "string", "description": "The SQL query to execute"}
        },
        "required": ["region", "query"]
    })
}

fn execute_sql(arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"_meta": meta(), "name": "execute_sql", "arguments": arguments}
    })
}

const MODERN: (&str, &str) = ("MCP-Protocol-Version", "2026-07-28");

fn detail(result: Result<Metadata, MetadataError>) -> String {
    match result {
        Err(MetadataError::Mismatch(m)) => m.detail,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn the_specs_tools_call_example_passes() {
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather")]);
    let metadata = check_request(&h, &get_weather(), None).unwrap();
    assert_eq!(metadata.generation, Generation::Modern);
    assert_eq!(metadata.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(metadata.params, None, "no schema given: no parameter is vouched for");
}

#[test]
fn the_specs_resources_read_example_passes() {
    let message = json!({
        "jsonrpc": "2.0", "id": 2, "method": "resources/read",
        "params": {"uri": "file:///projects/myapp/config.json", "_meta": meta()}
    });
    let h = headers(&[MODERN, ("Mcp-Method", "resources/read"), ("Mcp-Name", "file:///projects/myapp/config.json")]);
    assert_eq!(check_request(&h, &message, None).unwrap().generation, Generation::Modern);
    let h = headers(&[MODERN, ("Mcp-Method", "resources/read"), ("Mcp-Name", "file:///etc/passwd")]);
    assert_eq!(
        detail(check_request(&h, &message, None)),
        "Mcp-Name header value 'file:///etc/passwd' does not match body value 'file:///projects/myapp/config.json'"
    );
}

#[test]
fn the_specs_error_message_is_reproduced() {
    let mut message = get_weather();
    message["params"]["name"] = json!("bar");
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "foo")]);
    let err = check_request(&h, &message, None).unwrap_err();
    assert_eq!(err.code(), -32020);
    assert_eq!(
        err.to_response(Some(&json!(1)), &[]),
        json!({
            "jsonrpc": "2.0", "id": 1,
            "error": {"code": -32020, "message": "Header mismatch: Mcp-Name header value 'foo' does not match body value 'bar'"}
        })
    );
}

#[test]
fn the_specs_custom_header_example_passes_and_yields_the_param() {
    let h =
        headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "execute_sql"), ("Mcp-Param-Region", "us-west1")]);
    let message = execute_sql(json!({"region": "us-west1", "query": "SELECT * FROM users"}));
    let metadata = check_request(&h, &message, Some(&execute_sql_schema())).unwrap();
    let expected = Param { header: "mcp-param-region".into(), name: "Region".into(), value: "us-west1".into() };
    assert_eq!(metadata.params, Some(vec![expected]));
}

#[test]
fn a_param_header_that_disagrees_or_is_missing_is_refused() {
    let schema = execute_sql_schema();
    let message = execute_sql(json!({"region": "us-west1", "query": "q"}));
    let base = [MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "execute_sql")];
    let mut wrong = base.to_vec();
    wrong.push(("mcp-param-region", "eu-north1"));
    assert_eq!(
        detail(check_request(&headers(&wrong), &message, Some(&schema))),
        "Mcp-Param-Region header value 'eu-north1' does not match body value 'us-west1'"
    );
    assert_eq!(
        detail(check_request(&headers(&base), &message, Some(&schema))),
        "Mcp-Param-Region header is missing (body value 'us-west1')"
    );
}

#[test]
fn a_param_header_without_a_schema_to_check_it_is_refused() {
    let message = execute_sql(json!({"region": "us-west1", "query": "q"}));
    let base = [MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "execute_sql")];
    let mut sent = base.to_vec();
    sent.push(("Mcp-Param-Region", "us-west1"));
    // No inputSchema known: nothing can vouch for the header, so the call is refused.
    assert_eq!(
        detail(check_call(&headers(&sent), &message, None)),
        "mcp-param-region cannot be checked: the door has no definition (inputSchema) for this tool, so it cannot \
         vouch for the header"
    );
    assert_eq!(check_call(&headers(&sent), &message, None).unwrap_err().code(), HEADER_MISMATCH);
    // check_request alone passes it (with nothing vouched for): the rule is check_call's.
    assert_eq!(check_request(&headers(&sent), &message, None).unwrap().params, None);
    // Without such a header, or with the schema, check_call is check_request.
    assert_eq!(check_call(&headers(&base), &message, None).unwrap().params, None);
    let checked = check_call(&headers(&sent), &message, Some(&execute_sql_schema())).unwrap();
    assert_eq!(checked.params.unwrap()[0].value, "us-west1");
    // Only 2026 headers are rules: an older client's stray header is ignored, never shown.
    let legacy = headers(&[("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Param-Region", "us-west1")]);
    let old = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute_sql"}});
    assert_eq!(check_call(&legacy, &old, None).unwrap().params, None);
}

#[test]
fn a_null_or_absent_argument_must_have_no_header() {
    let schema = execute_sql_schema();
    let base = [MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "execute_sql")];
    for arguments in [json!({"query": "q"}), json!({"region": null, "query": "q"})] {
        let message = execute_sql(arguments);
        assert_eq!(check_request(&headers(&base), &message, Some(&schema)).unwrap().params, Some(vec![]));
        let mut extra = base.to_vec();
        extra.push(("Mcp-Param-Region", "us-west1"));
        assert!(detail(check_request(&headers(&extra), &message, Some(&schema))).contains("has no body value"));
    }
}

#[test]
fn integers_compare_numerically_and_booleans_in_lower_case() {
    let schema = json!({"type": "object", "properties": {
        "n": {"type": "integer", "x-mcp-header": "N"},
        "flag": {"type": "boolean", "x-mcp-header": "Flag"}
    }});
    let base = [MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "t")];
    let call = |n: Value, flag: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"_meta": meta(), "name": "t", "arguments": {"n": n, "flag": flag}}})
    };
    for (header_n, body_n) in [("42", json!(42)), ("42.0", json!(42)), ("42", json!(42.0)), ("-7", json!(-7))] {
        let mut h = base.to_vec();
        h.extend([("Mcp-Param-N", header_n), ("Mcp-Param-Flag", "true")]);
        let metadata = check_request(&headers(&h), &call(body_n.clone(), json!(true)), Some(&schema));
        assert!(metadata.is_ok(), "{header_n} vs {body_n}: {metadata:?}");
    }
    for (header_n, header_flag) in [("43", "true"), ("42", "True"), ("42", "1"), ("0x2a", "true")] {
        let mut h = base.to_vec();
        h.extend([("Mcp-Param-N", header_n), ("Mcp-Param-Flag", header_flag)]);
        assert!(check_request(&headers(&h), &call(json!(42), json!(true)), Some(&schema)).is_err(), "{header_n}");
    }
    // Beyond JavaScript's safe integers: cannot be mirrored faithfully, so refused.
    let mut h = base.to_vec();
    h.extend([("Mcp-Param-N", "9007199254740993"), ("Mcp-Param-Flag", "false")]);
    let err = detail(check_request(&headers(&h), &call(json!(9_007_199_254_740_993_i64), json!(false)), Some(&schema)));
    assert!(err.contains("not an integer within"), "{err}");
}

#[test]
fn nested_parameters_are_read_at_their_exact_path() {
    let schema = json!({"type": "object", "properties": {
        "target": {"type": "object", "properties": {"tenant": {"type": "string", "x-mcp-header": "Tenant"}}}
    }});
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"_meta": meta(), "name": "t", "arguments": {"target": {"tenant": "acme"}, "tenant": "evil"}}});
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "t"), ("Mcp-Param-Tenant", "acme")]);
    let params = check_request(&h, &message, Some(&schema)).unwrap().params.unwrap();
    assert_eq!(params[0].value, "acme");
}

/// The specification's encoding table, both ways.
#[test]
fn the_specs_encoding_table() {
    let table = [
        ("us-west1", "us-west1"),
        ("Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="),
        (" padded ", "=?base64?IHBhZGRlZCA=?="),
        ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
        ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
    ];
    for (original, encoded) in table {
        assert_eq!(encode_value(original), encoded, "{original:?}");
        assert_eq!(decode_value(encoded).as_deref(), Ok(original), "{encoded}");
    }
}

#[test]
fn an_encoded_name_is_decoded_before_comparing() {
    let mut message = get_weather();
    message["params"]["name"] = json!("Hello, 世界");
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?SGVsbG8sIOS4lueVjA==?=")]);
    assert!(check_request(&h, &message, None).is_ok());
    // Encoding an ASCII value that did not need it is allowed.
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?Z2V0X3dlYXRoZXI=?=")]);
    assert!(check_request(&h, &get_weather(), None).is_ok());
}

#[test]
fn decoding_is_strict() {
    // Markers are case-sensitive: an upper-case one is a plain value.
    assert_eq!(decode_value("=?BASE64?SGk=?=").as_deref(), Ok("=?BASE64?SGk=?="));
    assert_eq!(decode_value("=?base64?=").unwrap_err(), DecodeError::Incomplete);
    for bad in ["=?base64?literal?=", "=?base64?SGk?=", "=?base64?SGk=\n?=", "=?base64?SGl=?=", "=?base64?S-k_?="] {
        assert_eq!(decode_value(bad).unwrap_err(), DecodeError::Base64, "{bad:?}");
    }
    assert_eq!(decode_value("=?base64?/w==?=").unwrap_err(), DecodeError::Utf8);
    assert_eq!(decode_value("=?base64??=").as_deref(), Ok(""));
    // A plain value shaped like the sentinel that does not decode is refused, not compared.
    let mut message = get_weather();
    message["params"]["name"] = json!("=?base64?literal?=");
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?literal?=")]);
    assert_eq!(
        detail(check_request(&h, &message, None)),
        "Mcp-Name header value '=?base64?literal?=' is not valid Base64 between =?base64? and ?="
    );
}

#[test]
fn header_characters_outside_visible_ascii_are_refused() {
    let mut h = headers(&[MODERN, ("Mcp-Method", "tools/call")]);
    h.insert("mcp-name", HeaderValue::from_bytes(b"get_w\xc3\xa9ather").unwrap());
    assert_eq!(detail(check_request(&h, &get_weather(), None)), "Mcp-Name header value contains invalid characters");
    let mut h = headers(&[MODERN, ("Mcp-Name", "get_weather")]);
    h.insert("mcp-method", HeaderValue::from_bytes(b"tools/call\xff").unwrap());
    assert!(detail(check_request(&h, &get_weather(), None)).starts_with("Mcp-Method header value contains invalid"));
}

#[test]
fn a_repeated_header_is_refused() {
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather"), ("mcp-name", "get_weather")]);
    assert_eq!(detail(check_request(&h, &get_weather(), None)), "Mcp-Name header is given more than once");
}

#[test]
fn required_headers_must_be_present_in_2026() {
    let h = headers(&[MODERN, ("Mcp-Name", "get_weather")]);
    assert_eq!(detail(check_request(&h, &get_weather(), None)), "Mcp-Method header is missing");
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call")]);
    assert_eq!(detail(check_request(&h, &get_weather(), None)), "Mcp-Name header is missing (required for tools/call)");
    let h = headers(&[MODERN, ("Mcp-Method", "tools/list"), ("Mcp-Name", "get_weather")]);
    assert_eq!(
        detail(check_request(&h, &get_weather(), None)),
        "Mcp-Method header value 'tools/list' does not match body value 'tools/call'"
    );
    // Header values are case-sensitive; header names are not.
    let h = headers(&[MODERN, ("MCP-METHOD", "Tools/Call"), ("Mcp-Name", "get_weather")]);
    assert!(detail(check_request(&h, &get_weather(), None)).starts_with("Mcp-Method header value 'Tools/Call'"));
}

#[test]
fn a_list_request_needs_no_name_but_may_not_carry_a_stray_one() {
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": meta()}});
    assert!(check_request(&headers(&[MODERN, ("Mcp-Method", "tools/list")]), &list, None).is_ok());
    let h = headers(&[MODERN, ("Mcp-Method", "tools/list"), ("Mcp-Name", "x")]);
    assert_eq!(detail(check_request(&h, &list, None)), "Mcp-Name header value 'x' has no body value");
}

#[test]
fn the_version_header_and_the_body_must_agree() {
    let h =
        headers(&[("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather")]);
    assert_eq!(
        detail(check_request(&h, &get_weather(), None)),
        "MCP-Protocol-Version header value '2025-11-25' does not match body value '2026-07-28'"
    );
    let h = headers(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather")]);
    assert_eq!(
        detail(check_request(&h, &get_weather(), None)),
        "MCP-Protocol-Version header is missing (body value '2026-07-28')"
    );
    // A 2026 header on a request whose body does not name its version.
    let mut message = get_weather();
    message["params"]["_meta"].as_object_mut().unwrap().remove(META_PROTOCOL_VERSION);
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather")]);
    assert!(detail(check_request(&h, &message, None)).contains("has no body value"));
}

#[test]
fn older_clients_are_the_legacy_generation_and_nothing_is_vouched_for() {
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_weather"}});
    for version in [None, Some("2025-06-18"), Some("2025-11-25"), Some("2025-03-26")] {
        let mut pairs = vec![("Mcp-Name", "something-else"), ("Mcp-Param-Region", "us-west1")];
        if let Some(v) = version {
            pairs.push(("MCP-Protocol-Version", v));
        }
        let metadata = check_request(&headers(&pairs), &call, Some(&execute_sql_schema())).unwrap();
        assert_eq!(metadata.generation, Generation::Legacy);
        assert_eq!(metadata.protocol_version.as_deref(), version);
        assert_eq!(metadata.params, None, "a legacy client's Mcp-Param-* headers are never vouched for");
    }
    assert_eq!(Generation::Legacy.as_str(), "2025");
    assert_eq!(Generation::Modern.as_str(), "2026-07-28");
}

#[test]
fn an_unknown_version_is_unsupported_with_the_schemas_body() {
    let h = headers(&[("MCP-Protocol-Version", "1900-01-01")]);
    let err = check_request(&h, &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}), None).unwrap_err();
    assert_eq!(err, MetadataError::UnsupportedVersion { requested: "1900-01-01".into() });
    assert_eq!(err.code(), -32022);
    // The schema's example, verbatim.
    assert_eq!(
        err.to_response(Some(&json!(1)), &["2026-07-28", "2025-11-25"]),
        json!({
            "jsonrpc": "2.0", "id": 1,
            "error": {"code": -32022, "message": "Unsupported protocol version",
                      "data": {"supported": ["2026-07-28", "2025-11-25"], "requested": "1900-01-01"}}
        })
    );
    assert_eq!(unsupported_version_response(None, "x", &[])["id"], Value::Null);
    assert!(unsupported_version_response(None, "x", &[]).get("id").is_none());
}

#[test]
fn notifications_need_the_method_header_but_no_meta() {
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}});
    assert!(check_request(&headers(&[MODERN, ("Mcp-Method", "notifications/cancelled")]), &note, None).is_ok());
    assert_eq!(detail(check_request(&headers(&[MODERN]), &note, None)), "Mcp-Method header is missing");
}

#[test]
fn quoted_values_cannot_inject_lines_or_grow_without_bound() {
    let mut message = get_weather();
    message["params"]["name"] = json!(format!("a\r\nX-Evil: 1{}", "z".repeat(200)));
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather")]);
    let text = detail(check_request(&h, &message, None));
    assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
    assert!(text.contains("a\\r\\nX-Evil") && text.ends_with("…'"), "{text}");
}

// x-mcp-header annotations -----------------------------------------------------------------

#[test]
fn annotations_are_read_from_properties_chains() {
    let schema = json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "opts": {"type": "object", "properties": {"dry": {"type": ["boolean", "null"], "x-mcp-header": "Dry-Run"}}},
        "x-mcp-header": {"type": "string", "description": "a property that happens to be named like the keyword"},
        "mode": {"type": "string", "default": {"x-mcp-header": "NotAnAnnotation"}, "enum": [{"x-mcp-header": "X"}]}
    }});
    let params = header_params(&schema).unwrap();
    let mut names: Vec<_> =
        params.iter().map(|p| (p.name.as_str(), p.header.as_str(), p.path.join("."), p.kind)).collect();
    names.sort_by_key(|n| n.0);
    assert_eq!(
        names,
        [
            ("Dry-Run", "mcp-param-dry-run", "opts.dry".to_owned(), ParamType::Boolean),
            ("Region", "mcp-param-region", "region".to_owned(), ParamType::String),
        ]
    );
}

#[test]
fn annotations_outside_properties_chains_are_invalid() {
    let cases = [
        json!({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string", "x-mcp-header": "X"}}}}),
        json!({"type": "object", "oneOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
        json!({"type": "object", "anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
        json!({"type": "object", "allOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
        json!({"type": "object", "not": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}}),
        json!({"type": "object", "if": {}, "then": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}}),
        json!({"$defs": {"r": {"type": "string", "x-mcp-header": "R"}}, "properties": {"r": {"$ref": "#/$defs/r"}}}),
        json!({"type": "object", "additionalProperties": {"type": "string", "x-mcp-header": "A"}}),
    ];
    for schema in cases {
        assert!(matches!(header_params(&schema), Err(AnnotationError::NotReachable { .. })), "{schema}");
    }
    let err = header_params(&cases_first()).unwrap_err();
    assert_eq!(err.to_string().split(" is not").next(), Some("x-mcp-header at /properties/xs/items"));
}

fn cases_first() -> Value {
    json!({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string", "x-mcp-header": "X"}}}})
}

#[test]
fn annotation_values_and_types_are_checked() {
    let with = |annotation: Value, kind: Value| {
        header_params(&json!({"type": "object", "properties": {"p": {"type": kind, "x-mcp-header": annotation}}}))
    };
    for bad in [json!(""), json!("Has Space"), json!("Line\nBreak"), json!("a:b"), json!("é"), json!(7), json!(null)] {
        assert!(matches!(with(bad.clone(), json!("string")), Err(AnnotationError::NotAToken { .. })), "{bad}");
    }
    for good in ["Region", "x", "a.b_c-d~e", "!#$%&'*+^`|"] {
        assert!(with(json!(good), json!("string")).is_ok(), "{good}");
    }
    for bad in [json!("number"), json!("object"), json!("array"), json!(["string", "integer"]), json!("null")] {
        assert!(matches!(with(json!("P"), bad.clone()), Err(AnnotationError::NotPrimitive { .. })), "{bad}");
    }
    assert!(matches!(
        header_params(&json!({"type": "object", "properties": {"p": {"x-mcp-header": "P"}}})),
        Err(AnnotationError::NotPrimitive { .. })
    ));
    let duplicate = json!({"type": "object", "properties": {
        "a": {"type": "string", "x-mcp-header": "Region"},
        "b": {"type": "string", "x-mcp-header": "REGION"}
    }});
    assert!(matches!(header_params(&duplicate), Err(AnnotationError::Duplicate { .. })));
}

#[test]
fn a_call_to_a_tool_with_an_invalid_definition_is_refused() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "number", "x-mcp-header": "N"}}});
    let h = headers(&[MODERN, ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_weather")]);
    assert!(detail(check_request(&h, &get_weather(), Some(&schema))).starts_with("the tool's definition is invalid"));
}

#[test]
fn unknown_param_headers_are_ignored_not_vouched_for() {
    let h = headers(&[
        MODERN,
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "execute_sql"),
        ("Mcp-Param-Region", "us-west1"),
        ("Mcp-Param-Tenant", "someone-else"),
    ]);
    let message = execute_sql(json!({"region": "us-west1", "query": "q"}));
    let params = check_request(&h, &message, Some(&execute_sql_schema())).unwrap().params.unwrap();
    assert_eq!(params.iter().map(|p| p.header.as_str()).collect::<Vec<_>>(), ["mcp-param-region"]);
}
