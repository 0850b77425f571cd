package arvapi

import (
	"net/http"
)

// The discovery document: googleapiclient (Python) builds its methods from
// it, Go reads defaultCollectionReplication. Every method has a response,
// every $ref a schema, every parameter a client passes is declared (query
// ones with location "query"), and there is no "dataWrapper" feature.

type (
	jmap   = map[string]any
	method struct {
		id, path, http string
		params         jmap
		request        bool
		response       string // schema name; "" for {}
	}
)

func pathParam() jmap { return jmap{"type": "string", "required": true, "location": "path"} }

func query(typ string) jmap { return jmap{"type": typ, "location": "query", "required": false} }

var listParams = jmap{"filters": query("array"), "where": query("object"), "order": query("array"), "select": query("array"),
	"distinct": query("boolean"), "limit": query("integer"), "offset": query("integer"), "count": query("string"),
	"include_trash": query("boolean"), "include_old_versions": query("boolean"), "cluster_id": query("string"), "bypass_federation": query("boolean")}

var resources = map[string][]method{
	"users": {
		{id: "current", path: "users/current", http: "GET", response: "User"},
		{id: "get", path: "users/{uuid}", http: "GET", params: jmap{"uuid": pathParam(), "select": query("array")}, response: "User"},
	},
	"groups": {
		{id: "get", path: "groups/{uuid}", http: "GET", params: jmap{"uuid": pathParam(), "select": query("array"), "include_trash": query("boolean")}, response: "Group"},
	},
	"api_client_authorizations": {
		{id: "current", path: "api_client_authorizations/current", http: "GET", response: "ApiClientAuthorization"},
	},
	"keep_services": {
		{id: "accessible", path: "keep_services/accessible", http: "GET", response: "KeepServiceList"},
	},
	"configs": {
		{id: "get", path: "config", http: "GET"},
	},
	"collections": {
		{id: "get", path: "collections/{uuid}", http: "GET", params: jmap{"uuid": pathParam(), "select": query("array"), "include_trash": query("boolean")}, response: "Collection"},
		{id: "list", path: "collections", http: "GET", params: listParams, response: "CollectionList"},
		{id: "create", path: "collections", http: "POST", params: jmap{"ensure_unique_name": query("boolean"), "select": query("array"), "cluster_id": query("string")}, request: true, response: "Collection"},
		{id: "update", path: "collections/{uuid}", http: "PUT", params: jmap{"uuid": pathParam(), "select": query("array")}, request: true, response: "Collection"},
		{id: "delete", path: "collections/{uuid}", http: "DELETE", params: jmap{"uuid": pathParam()}, response: "Collection"},
	},
}

var schemaPrefixes = map[string]string{"User": "tpzed", "Group": "j7d0g", "ApiClientAuthorization": "gj3su", "KeepService": "bi6l4", "Collection": "4zz18"}

func (s *Server) discovery(r *http.Request) (any, error) {
	replicas := s.opt.DefaultReplicas
	if c, err := s.opt.Keep.Authenticate(r); err == nil { // no token check here: users/current rejects bad ones
		replicas = c.DefaultReplicas
	}
	res := jmap{}
	for name, ms := range resources {
		methods := jmap{}
		for _, m := range ms {
			params := m.params
			if params == nil {
				params = jmap{}
			}
			j := jmap{"id": "arvados." + name + "." + m.id, "path": m.path, "httpMethod": m.http, "parameters": params, "response": jmap{}}
			if m.response != "" {
				j["response"] = jmap{"$ref": m.response}
			}
			if m.request {
				schema := m.response
				j["request"] = jmap{"required": true, "properties": jmap{resourceKey(name): jmap{"$ref": schema}}}
			}
			methods[m.id] = j
		}
		res[name] = jmap{"methods": methods}
	}
	schemas := jmap{}
	for name, prefix := range schemaPrefixes {
		schemas[name] = jmap{"id": name, "type": "object", "uuidPrefix": prefix}
	}
	for _, l := range []string{"KeepService", "Collection"} {
		schemas[l+"List"] = jmap{"id": l + "List", "type": "object", "properties": jmap{"items": jmap{"type": "array", "items": jmap{"$ref": l}}}}
	}
	return jmap{
		"kind": "discovery#restDescription", "discoveryVersion": "v1", "id": "arvados:v1", "name": "arvados", "version": "v1",
		"title": "keepgate's Arvados API (collections and Keep)", "protocol": "rest",
		"rootUrl": s.external(r).root(), "servicePath": "arvados/v1/", "basePath": "/arvados/v1/", "batchPath": "batch",
		"uuidPrefix": s.opt.UUIDPrefix, "defaultCollectionReplication": replicas,
		"blobSignatureTtl": int64(s.opt.SignatureTTL.Seconds()), "maxRequestSize": s.opt.MaxRequestSize,
		"resources": res, "schemas": schemas,
	}, nil
}

// resourceKey is the request body member of a resource's records:
// "collection" for "collections".
func resourceKey(resource string) string { return resource[:len(resource)-1] }
