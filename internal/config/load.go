// Package config loads the typed configuration of keepgate's services. It
// is the only package that imports viper: services get plain structs.
//
// A service's configuration is a struct whose fields carry mapstructure
// tags (lower_snake_case keys, the convention of every keepgate config
// file), pre-filled with its defaults. Load reads an optional YAML file on
// top of those defaults, then environment variables on top of the file:
// the key "signature_ttl" of a keepstore is KEEPSTORE_SIGNATURE_TTL, and a
// nested key "a.b" is PREFIX_A_B. Unknown keys in the file are an error
// that names them, so a typo never silently leaves a default in force.
//
// Values: durations are Go durations ("336h", "90s"); ByteSize fields take
// a number of bytes or a number with a unit ("256MiB", "1G"); lists take a
// YAML list, or in the environment a comma-separated string. A list of
// structures (e.g. volumes) can be given in the environment as JSON.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// Load fills out, a pointer to a struct already holding the defaults, from
// the YAML file at path (none when path is "") and from environment
// variables named envPrefix + "_" + KEY in upper case, dots replaced by
// underscores (for envPrefix "KEEPSTORE": KEEPSTORE_LISTEN). The
// environment wins over the file, the file over the defaults.
//
// Every key the struct knows gets a viper default, so that every key can
// be set from the environment. Keys in the file that the struct does not
// know are an error naming them, e.g. `config /etc/x.yml: unknown key
// "volumez"`.
func Load(path, envPrefix string, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.Load: out must be a pointer to a struct, not %T", out)
	}
	where := "config"
	if path != "" {
		where = "config " + path
	}
	v := viper.New()
	v.SetConfigType("yaml")
	setDefaults(v, "", rv.Elem())
	if envPrefix != "" {
		v.SetEnvPrefix(envPrefix)
		v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
		v.AutomaticEnv()
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: not valid YAML: %w", where, err)
		}
	}
	err := v.UnmarshalExact(out, viper.DecodeHook(decodeHook()))
	if err == nil {
		return nil
	}
	if unknown := unknownKeys(v, rv.Elem().Type()); len(unknown) > 0 {
		q := make([]string, len(unknown))
		for i, k := range unknown {
			q[i] = strconv.Quote(k)
		}
		noun := "unknown key"
		if len(q) > 1 {
			noun = "unknown keys"
		}
		return fmt.Errorf("%s: %s %s (keys are lower_snake_case; see the annotated example config)", where, noun, strings.Join(q, ", "))
	}
	return fmt.Errorf("%s: %w", where, cleanDecodeError(err))
}

// decodeHook converts what YAML and the environment give into the typed
// fields: JSON text for structured values, durations, types with an
// UnmarshalText method (ByteSize), comma-separated lists.
func decodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		jsonStringHook,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.TextUnmarshallerHookFunc(),
		stringToListHook,
	)
}

// jsonStringHook lets a structured value (a list of structs, a map, a
// struct) be given as JSON text, as it must be in an environment variable.
func jsonStringHook(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || from.Kind() != reflect.String {
		return data, nil
	}
	structured := to.Kind() == reflect.Map || to.Kind() == reflect.Struct ||
		to.Kind() == reflect.Slice && to.Elem().Kind() != reflect.String
	t := strings.TrimSpace(s)
	if !structured && !(to.Kind() == reflect.Slice && strings.HasPrefix(t, "[")) {
		return data, nil
	}
	if t == "" {
		return data, nil
	}
	var out any
	if err := json.Unmarshal([]byte(t), &out); err != nil {
		return nil, fmt.Errorf("expected JSON for a structured value: %w", err)
	}
	return out, nil
}

// stringToListHook splits "a, b,c" into a list, trimming entries and
// dropping empty ones.
func stringToListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice {
		return data, nil
	}
	out := []string{}
	for _, p := range strings.Split(data.(string), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// setDefaults registers a viper default for every field of the struct v,
// recursing into nested structs with dotted keys.
func setDefaults(vp *viper.Viper, prefix string, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, squash := tagName(f)
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if squash && f.Type.Kind() == reflect.Struct {
			setDefaults(vp, prefix, fv)
			continue
		}
		key := prefix + name
		if isPlainStruct(f.Type) {
			setDefaults(vp, key+".", fv)
			continue
		}
		vp.SetDefault(key, fv.Interface())
	}
}

// tagName returns the key of a field: its mapstructure tag name, else its
// lower-cased Go name (mapstructure matches case-insensitively).
func tagName(f reflect.StructField) (name string, squash bool) {
	tag := f.Tag.Get("mapstructure")
	name, opts, _ := strings.Cut(tag, ",")
	squash = strings.Contains(","+opts+",", ",squash,") || f.Anonymous && name == ""
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, squash
}

// isPlainStruct reports whether t is a struct to recurse into (not one
// decoded as a single value, like time.Time).
func isPlainStruct(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	if t == reflect.TypeOf(time.Time{}) {
		return false
	}
	return !reflect.PointerTo(t).Implements(reflect.TypeOf((*interface{ UnmarshalText([]byte) error })(nil)).Elem())
}

// unknownKeys decodes the settings again, leniently, to list the keys that
// match no field (as dotted paths, e.g. "volumes[0].directory.rootz").
func unknownKeys(v *viper.Viper, t reflect.Type) []string {
	var md mapstructure.Metadata
	scratch := reflect.New(t).Interface()
	_ = v.Unmarshal(scratch, viper.DecodeHook(decodeHook()), func(c *mapstructure.DecoderConfig) {
		c.Metadata = &md
	})
	sort.Strings(md.Unused)
	return md.Unused
}

// cleanDecodeError drops mapstructure's generic preamble so the message
// fits on one line.
func cleanDecodeError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):")
	msg = strings.Join(strings.Fields(msg), " ")
	return errors.New(msg)
}

// ByteSize is a number of bytes. In a config file or the environment it
// is a plain number ("268435456") or a number with a unit: B, K/KB (1000),
// KiB (1024), M/MB, MiB, G/GB, GiB, T/TB, TiB, P/PB, PiB; e.g. "256MiB". It may be
// negative where a key gives that a meaning ("-1").
type ByteSize int64

var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "tib": 1 << 40,
	"p": 1e15, "pb": 1e15, "pib": 1 << 50,
}

// UnmarshalText parses a size such as "64MiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if rest, neg := strings.CutPrefix(s, "-"); neg {
		var p ByteSize
		if err := p.UnmarshalText([]byte(rest)); err != nil || strings.HasPrefix(rest, "-") {
			return fmt.Errorf("invalid size %q", s)
		}
		*b = -p
		return nil
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := byteUnits[unit]
	if num == "" || !ok {
		return fmt.Errorf("invalid size %q: want a number of bytes or a number with a unit such as 256MiB", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > (1<<63-1)/mult {
			return fmt.Errorf("invalid size %q: too large", s)
		}
		*b = ByteSize(n * mult)
		return nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mult) >= 1<<63 {
		return fmt.Errorf("invalid size %q", s)
	}
	*b = ByteSize(f * float64(mult))
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// ReadSecretFile reads a token or key from a file: surrounding whitespace
// is trimmed. It refuses a file that other users may read or write (a
// secret must be mode 0600 or 0640, or stricter) and a file that is empty.
func ReadSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("secret file: no path given")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	if err := CheckSecretMode(path, fi); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return "", fmt.Errorf("secret file %s: %w", path, err)
	}
	if len(b) > 64<<10 {
		return "", fmt.Errorf("secret file %s: larger than 64 KiB; is this the right file?", path)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s: empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("secret file %s: holds more than one line", path)
	}
	return s, nil
}
