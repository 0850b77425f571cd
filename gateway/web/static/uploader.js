// keepgate browser uploader: splits files into 64 MiB blocks, hashes each
// with MD5 (spark-md5; WebCrypto has no MD5), PUTs them to a keepproxy
// (with CORS when it is on another origin), retries failed blocks with
// back-off, then stores an Arvados manifest naming every file and shows its
// locator. Blocks already uploaded in this browser session are not sent
// again when an upload is retried.
//
// Where the token and the data go is decided by the server that serves this
// page, never by the page's URL or by anything saved in the browser: the
// proxies listed in config.json next to this page (written by the operator),
// or, without a usable config.json, the page's own origin.
(function () {
  "use strict";
  var BLOCK = 64 * 1024 * 1024;
  var EMPTY = "d41d8cd98f00b204e9800998ecf8427e+0";
  var MAX_ATTEMPTS = 6;
  var $ = function (id) { return document.getElementById(id); };
  var queue = [];

  // Earlier versions saved a proxy URL (possibly one an attacker's link put
  // in the query string) here; it is never used and is cleared.
  try { localStorage.removeItem("keepgate.proxy"); } catch (e) { /* storage disabled */ }
  $("token").value = sessionStorage.getItem("keepgate.token") || "";

  // cleanProxy returns an absolute http(s) URL without trailing slashes, or
  // null for anything else (relative, other schemes, credentials, query).
  function cleanProxy(s) {
    if (typeof s !== "string") { return null; }
    var u;
    try { u = new URL(s); } catch (e) { return null; }
    if ((u.protocol !== "https:" && u.protocol !== "http:") || u.username || u.password || u.search || u.hash) {
      return null;
    }
    return (u.origin + u.pathname).replace(/\/+$/, "");
  }

  function ownOrigin() {
    var p = cleanProxy(location.origin);
    return p ? [p] : [];
  }

  // loadProxies resolves to the proxies this page may talk to: those listed
  // in the operator's config.json ({"proxies": ["https://keep.example.org"]}),
  // else (no file, invalid JSON, no usable entry) the page's own origin.
  function loadProxies() {
    return fetch("config.json", { cache: "no-store", mode: "same-origin", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (cfg) {
        var list = [];
        if (cfg && Array.isArray(cfg.proxies)) {
          cfg.proxies.forEach(function (s) {
            var p = cleanProxy(s);
            if (p && list.indexOf(p) < 0) { list.push(p); }
          });
        }
        return list.length ? list : ownOrigin();
      })
      .catch(function () { return ownOrigin(); });
  }

  function showTarget() {
    var p = $("proxy").value;
    $("target").textContent = p ? "Uploading to " + p :
      "No proxy to upload to: open this page from the keepproxy (/_upload/) or a server with a config.json.";
  }

  var proxies = loadProxies().then(function (list) {
    var sel = $("proxy");
    sel.textContent = "";
    list.forEach(function (p) {
      var o = document.createElement("option");
      o.value = p;
      o.textContent = p;
      sel.appendChild(o);
    });
    sel.disabled = list.length < 2;
    showTarget();
    sel.setAttribute("data-ready", "");
    return list;
  });
  $("proxy").addEventListener("change", showTarget);

  function human(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }

  function setStatus(html, result) {
    var s = $("status");
    s.innerHTML = html;
    if (result) { s.setAttribute("data-result", result); } else { s.removeAttribute("data-result"); }
  }

  function escapeText(s) {
    var d = document.createElement("div");
    d.textContent = s;
    return d.innerHTML;
  }

  function addFiles(list) {
    for (var i = 0; i < list.length; i++) {
      var f = list[i];
      var tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td></td><td><progress max='1' value='0'></progress></td><td>queued</td>";
      tr.cells[0].textContent = f.name;
      tr.cells[1].textContent = human(f.size);
      $("files").tBodies[0].appendChild(tr);
      queue.push({ file: f, row: tr, locators: null });
    }
    $("upload").disabled = queue.length === 0;
  }

  $("file").addEventListener("change", function (e) { addFiles(e.target.files); });
  var drop = $("drop");
  drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });

  // putBlock sends one block; it resolves to the signed locator.
  function putBlock(proxy, token, hash, body, replicas, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", proxy + "/" + hash);
      xhr.setRequestHeader("Authorization", "Bearer " + token);
      xhr.setRequestHeader("X-Keep-Desired-Replicas", String(replicas));
      xhr.upload.onprogress = function (e) { if (onProgress) { onProgress(e.loaded); } };
      xhr.onload = function () {
        if (xhr.status === 200) {
          resolve(xhr.responseText.trim());
          return;
        }
        var s = xhr.status;
        reject({ status: s, message: (xhr.responseText || xhr.statusText).trim(),
          retry: s === 408 || s === 429 || (s >= 500 && s !== 507) });
      };
      xhr.onerror = function () { reject({ status: 0, message: "network error (proxy unreachable, or CORS refused)", retry: true }); };
      xhr.ontimeout = xhr.onerror;
      xhr.send(body);
    });
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  async function putWithRetry(proxy, token, hash, body, replicas, onProgress, onRetry) {
    for (var attempt = 1; ; attempt++) {
      try {
        return await putBlock(proxy, token, hash, body, replicas, onProgress);
      } catch (err) {
        if (!err.retry || attempt >= MAX_ATTEMPTS) {
          var hint = err.status === 403 ? " — check the token" : err.status === 413 ? " — block too large" : "";
          throw new Error("HTTP " + err.status + ": " + err.message + hint);
        }
        var wait = Math.min(20000, 1000 * Math.pow(2, attempt - 1)) * (0.5 + Math.random() / 2);
        if (onRetry) { onRetry(attempt, err); }
        await sleep(wait);
      }
    }
  }

  // Signed locators belong to one proxy's cluster, so the proxy is part of
  // the key.
  function cacheKey(proxy, f, i) { return "keepgate.block:" + proxy + ":" + f.name + ":" + f.size + ":" + f.lastModified + ":" + i; }

  async function uploadFile(item, proxy, token, replicas) {
    var f = item.file, row = item.row, bar = row.cells[2].firstChild, state = row.cells[3];
    var locators = [];
    var done = 0;
    for (var off = 0, i = 0; off < f.size; off += BLOCK, i++) {
      var key = cacheKey(proxy, f, i);
      var cached = sessionStorage.getItem(key);
      var len = Math.min(BLOCK, f.size - off);
      if (cached) {
        locators.push(cached);
        done += len;
        bar.value = done / f.size;
        continue;
      }
      state.textContent = "hashing block " + (i + 1);
      var buf = await f.slice(off, off + len).arrayBuffer();
      var hash = SparkMD5.ArrayBuffer.hash(buf);
      state.textContent = "uploading block " + (i + 1);
      var base = done;
      var loc = await putWithRetry(proxy, token, hash, buf, replicas,
        function (n) { bar.value = (base + n) / f.size; },
        function (attempt, err) { state.textContent = "retrying block " + (i + 1) + " (" + err.message + ")"; });
      buf = null;
      sessionStorage.setItem(key, loc);
      locators.push(loc);
      done += len;
      bar.value = done / f.size;
    }
    bar.value = 1;
    state.textContent = "done";
    return locators;
  }

  // Manifest file names escape backslash, ':' and bytes 0x00-0x20 as \ooo.
  function escapeName(name) {
    return name.replace(/[\x00-\x20\\:]/g, function (c) {
      return "\\" + ("00" + c.charCodeAt(0).toString(8)).slice(-3);
    });
  }

  function buildManifest(items) {
    var locs = [], segs = [], pos = 0;
    items.forEach(function (it) {
      it.locators.forEach(function (l) { locs.push(l); });
      segs.push(pos + ":" + it.file.size + ":" + escapeName(it.file.name));
      pos += it.file.size;
    });
    if (locs.length === 0) { locs.push(EMPTY); }
    return ". " + locs.join(" ") + " " + segs.join(" ") + "\n";
  }

  $("upload").addEventListener("click", async function () {
    $("upload").disabled = true;
    var list = await proxies;
    var proxy = $("proxy").value;
    var token = $("token").value.trim();
    var replicas = parseInt($("replicas").value, 10) || 2;
    if (list.indexOf(proxy) < 0 || !token) {
      setStatus(!token ? "Enter your token first." :
        "No proxy to upload to: open this page from the keepproxy (/_upload/) or a server with a config.json.", "error");
      $("upload").disabled = false;
      return;
    }
    sessionStorage.setItem("keepgate.token", token);
    setStatus("Uploading to " + escapeText(proxy) + "…");
    try {
      for (var i = 0; i < queue.length; i++) {
        if (!queue[i].locators || queue[i].proxy !== proxy) {
          queue[i].locators = await uploadFile(queue[i], proxy, token, replicas);
          queue[i].proxy = proxy;
        }
      }
      var text = buildManifest(queue);
      var bytes = new TextEncoder().encode(text);
      var mloc = await putWithRetry(proxy, token, SparkMD5.ArrayBuffer.hash(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), bytes, replicas);
      var total = queue.reduce(function (a, it) { return a + it.file.size; }, 0);
      setStatus("Uploaded " + queue.length + " file(s), " + human(total) + ". Manifest locator:<br><code id='manifest'>" +
        escapeText(mloc) + "</code><br>Fetch with: <code>keep get " + escapeText(mloc) + " DEST/</code>", "ok");
      $("status").setAttribute("data-locator", mloc);
    } catch (e) {
      setStatus("Upload failed: " + escapeText(e.message) + ". Press Upload to retry: finished blocks are not sent again.", "error");
      $("upload").disabled = false;
    }
  });
})();
