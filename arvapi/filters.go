package arvapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keepgate/keepgate/state"
)

// Limits of a list.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// listQuery reads a list's parameters: filters ([[attr, op, operand],
// …]), where ({attr: value}), order (["attr asc", …] or "attr desc"),
// limit, offset, count ("exact" or "none"), select, include_trash. Bad
// ones are 422.
func listQuery(r *http.Request, q *state.CollectionQuery) (countNone bool, sel []string, err error) {
	if v := param(r, "filters"); v != "" {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			return false, nil, unprocessable("filters: want a JSON array of [attribute, operator, operand] arrays")
		}
		for _, f := range raw {
			flt, err := parseFilter(f)
			if err != nil {
				return false, nil, err
			}
			q.Filters = append(q.Filters, flt)
		}
	}
	if v := param(r, "where"); v != "" {
		var where map[string]json.RawMessage
		if err := json.Unmarshal([]byte(v), &where); err != nil {
			return false, nil, unprocessable("where: want a JSON object of attribute: value")
		}
		for attr, val := range where {
			flt, err := filterOf(attr, "=", val)
			if err != nil {
				return false, nil, err
			}
			q.Filters = append(q.Filters, flt)
		}
	}
	if v := param(r, "order"); v != "" {
		var list []string
		if json.Unmarshal([]byte(v), &list) != nil {
			list = strings.Split(v, ",")
		}
		for _, o := range list {
			f := strings.Fields(o)
			if len(f) == 0 {
				continue
			}
			attr := strings.TrimPrefix(f[0], "collections.")
			if _, ok := state.CollectionAttrs[attr]; !ok || len(f) > 2 || (len(f) == 2 && f[1] != "asc" && f[1] != "desc") {
				return false, nil, unprocessable("order %q: want \"attribute asc\" or \"attribute desc\" with a collection attribute", truncate(o, 60))
			}
			q.Order = append(q.Order, state.Order{Attr: attr, Desc: len(f) == 2 && f[1] == "desc"})
		}
	}
	q.Limit = defaultLimit
	if v := param(r, "limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return false, nil, unprocessable("limit %q: want a number ≥ 0", truncate(v, 20))
		}
		q.Limit = min(n, maxLimit)
	}
	if v := param(r, "offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return false, nil, unprocessable("offset %q: want a number ≥ 0", truncate(v, 20))
		}
		q.Offset = n
	}
	switch c := param(r, "count"); c {
	case "", "exact":
	case "none":
		countNone = true
	default:
		return false, nil, unprocessable("count %q: want exact or none", truncate(c, 20))
	}
	if q.IncludeTrash, err = boolParam(r, "include_trash"); err != nil {
		return false, nil, err
	}
	sel, err = selectParam(r)
	return countNone, sel, err
}

func selectParam(r *http.Request) ([]string, error) {
	v := param(r, "select")
	if v == "" {
		return nil, nil
	}
	var sel []string
	if err := json.Unmarshal([]byte(v), &sel); err != nil {
		return nil, unprocessable("select: want a JSON array of attribute names")
	}
	return sel, nil
}

func parseFilter(raw json.RawMessage) (state.Filter, error) {
	var f []json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil || len(f) != 3 {
		return state.Filter{}, unprocessable("filter %s: want [attribute, operator, operand]", truncate(string(raw), 80))
	}
	var attr, op string
	if json.Unmarshal(f[0], &attr) != nil || json.Unmarshal(f[1], &op) != nil {
		return state.Filter{}, unprocessable("filter %s: attribute and operator must be strings", truncate(string(raw), 80))
	}
	return filterOf(strings.TrimPrefix(attr, "collections."), strings.ToLower(op), f[2])
}

// filterOf types a filter's operand by its attribute.
func filterOf(attr, op string, operand json.RawMessage) (state.Filter, error) {
	typ, ok := state.CollectionAttrs[attr]
	if !ok {
		return state.Filter{}, unprocessable("filter on %q: collections cannot be filtered by it (attributes: uuid, name, owner_uuid, portable_data_hash, created_at, modified_at, trash_at, …)", truncate(attr, 40))
	}
	f := state.Filter{Attr: attr, Op: op}
	if string(operand) == "null" {
		switch op {
		case "=", "is_null":
			f.Op = state.OpIsNull
			return f, nil
		case "!=", "not_null":
			f.Op = state.OpNotNull
			return f, nil
		}
	}
	switch op {
	case state.OpEq, state.OpNe, state.OpLt, state.OpLe, state.OpGt, state.OpGe, state.OpLike, state.OpILike:
		v, err := operandOf(attr, typ, operand)
		if err != nil {
			return f, err
		}
		if (op == state.OpLike || op == state.OpILike) && typ != state.AttrString {
			return f, unprocessable("filter %s %s: %s is not a text attribute", attr, op, attr)
		}
		f.Values = []any{v}
	case state.OpIn, state.OpNotIn:
		var list []json.RawMessage
		if err := json.Unmarshal(operand, &list); err != nil {
			return f, unprocessable("filter %s %s: want an array operand", attr, op)
		}
		for _, o := range list {
			v, err := operandOf(attr, typ, o)
			if err != nil {
				return f, err
			}
			f.Values = append(f.Values, v)
		}
	default:
		return f, unprocessable("filter operator %q is not supported (use =, !=, <, <=, >, >=, like, ilike, in, not in)", truncate(op, 20))
	}
	return f, nil
}

func operandOf(attr string, typ state.AttrType, raw json.RawMessage) (any, error) {
	switch typ {
	case state.AttrString:
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, nil
		}
	case state.AttrTime:
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return t, nil
			}
		}
	case state.AttrInt:
		var n int64
		if json.Unmarshal(raw, &n) == nil {
			return n, nil
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n, nil
			}
		}
	case state.AttrBool:
		var b bool
		if json.Unmarshal(raw, &b) == nil {
			return b, nil
		}
	}
	return nil, unprocessable("filter on %s: operand %s has the wrong type", attr, truncate(string(raw), 60))
}
