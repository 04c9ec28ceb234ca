// Package statuspage is the node's status page: a single HTML page, its
// stylesheet and script, embedded in the binary and served at / on the
// admin listener, and the in-memory history it draws its tiles and charts
// from (GET /api/history).
//
// The page needs no build step and loads nothing from elsewhere (gateways
// are often offline): plain HTML, CSS and JavaScript, charts drawn by hand
// in inline SVG. It polls /api/history for the tiles and charts and the
// admin API's /api/topics, /api/groups and /api/devices for its tables,
// showing "not available" for a table whose endpoint is missing. A center
// (a node with a mirror receiver) shows its fleet instead of what it does
// not have: an Edges tile and a chart of the edges' copy lag from the
// samples (FleetSample), and a table of its edges from /api/mirror/edges;
// a node without MQTT shows no device tile or table. When the
// admin API asks for a bearer token (401), it lets the user paste one and
// keeps it in the browser's localStorage.
//
// A Sampler takes a Sample every interval from a function the node gives it
// and keeps the last hour of them in a ring. Rates (records per second in
// and out) are computed between consecutive samples. This package knows
// nothing of the node: the node fills in each Sample.
package statuspage
