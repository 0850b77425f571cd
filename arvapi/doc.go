// Package arvapi is the small slice of the Arvados API that arv-put,
// arv-get, arv-ls and the Python and Go SDKs call, served by keepproxy so
// those clients work against keepgate alone, with access keys (or
// token-file entries) as their ARVADOS_API_TOKEN. The calls, their order,
// the fields the clients read and their pitfalls are those recorded in
// ARVADOS-API.md (the team's shared notes):
//
//	GET  /discovery/v1/apis/arvados/v1/rest      the discovery document (no token needed)
//	GET  /arvados/v1/config                      ClusterID, StorageClasses, Collections, API (no token needed)
//	GET  /arvados/v1/users/current               the caller's principal as a user
//	GET  /arvados/v1/users/{uuid}                the same, by its UUID
//	GET  /arvados/v1/api_client_authorizations/current
//	GET  /arvados/v1/groups/{uuid}               always 404: keepgate has no projects
//	GET|HEAD /arvados/v1/keep_services/accessible  keepgate itself, as a proxy
//	GET  /arvados/v1/collections                 list (filters, where, order, limit, offset, count, select, include_trash)
//	POST /arvados/v1/collections                 create (flat JSON, {"collection":{…}}, or a collection=<JSON> form)
//	GET  /arvados/v1/collections/{uuid or pdh}   get, manifest signed for the caller
//	PUT|PATCH /arvados/v1/collections/{uuid}     update
//	DELETE /arvados/v1/collections/{uuid}        trash
//
// Anything else under /arvados/v1/ or /discovery/v1/ is a 404 naming the
// method and path. Every answer is a JSON object; every error is
// {"errors":[msg],"error_token":"<unix>+<8 hex>"} with the status of its
// blockstore Kind (401 no or bad token, 403 denied, 404 unknown, 413 too
// large, 422 bad input or a name clash, 5xx only for real outages).
//
// Collections live in the state database (state.CollectionStore) and
// belong to the caller's storage: every look-up is confined to it, and a
// collection of another storage answers exactly as one that never existed.
// A manifest is saved only when every locator is signed for the caller and
// every block is present in the caller's storage (checked with the
// gateway's own HEAD path); it is stored without signatures, and signed
// for the caller again on every answer. What the package needs from the
// gateway is the Keep interface.
package arvapi
