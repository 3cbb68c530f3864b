// Package httpapi serves the gatework API (SPEC §4) over HTTP as an
// http.Handler in front of any api.API: POST /api/<method> with a JSON
// object body, {"result": …} or {"error":{"code":…,"message":…}} back.
//
// Methods are named in lowerCamel (sendToUid, getClientListByGroup, …;
// unBindUid is accepted for unbindUid). Request fields are snake_case:
// client, uid, uids, group, groups, message, message_base64, without,
// cursor, limit, fields, unique, unique_percent, force, session. An empty
// body is {}; unknown fields, wrong types and out-of-range values are
// refused with 400 naming the field. A message is either "message", a
// UTF-8 string sent as is, or "message_base64", any bytes in standard
// base64. Defaults follow the PHP originals: fields 255, unique true,
// force false. Numbers inside a session reach the api.API as json.Number,
// so large integers keep their exact value.
//
// Answers: actions give {"result": null}; isOnline a boolean; getClientInfo
// the keys asked for; getSession the session object; lists a page
// {"items", "next_cursor", "partial", "missing"}; counts, isUidOnline,
// getClientSessionsByGroup and getStats carry "partial" and "missing"
// beside "result". getStats (the web console's live figures: every
// gateway's process and counters, the workers, the totals) is served when
// the api.API also implements StatsAPI, as *api.Client does.
//
// GET /api lists the methods and GET /api/openapi.json is an OpenAPI 3.1
// document; both are generated from the table that drives dispatch.
//
// Every request needs "Authorization: Bearer <token>"; with no token
// configured only loopback callers are served, and of those not web pages
// (a Host that is not a loopback name, an Origin of another site and a
// method call not typed application/json are refused). A refused request
// is answered without reading its body and its connection closed. Each API
// call runs under the request's context with a deadline (Config.Timeout).
package httpapi
