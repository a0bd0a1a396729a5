// Annotation canvas: the browser holds the label image and draws it; Python owns the labels.
// The browser fetches the label ids once (raw little-endian uint16, or uint32 past 65535 ids, gzip over HTTP), colours them
// itself (by class or by instance), draws contours, lassos and selections locally, and emits only
// finished actions. Python answers an edit with a patch of the changed box.

const FILL_ALPHA = 80;
const EDGE_ALPHA = 230;
const CLOSE_PX = 8; // screen pixels from the start point that close a contour
const OV_TILE = 1024; // the mask overlay is drawn on canvases of this many pixels a side: an edit repaints only its own

function hexToRgb(hex) {
  const v = parseInt(hex.replace("#", ""), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function instanceColor(id) {
  // A stable pseudo-random bright colour per mask id.
  let h = (id * 2654435761) >>> 0;
  return [64 + (h & 127) + 64 * ((h >> 7) & 1), 64 + ((h >> 8) & 191), 64 + ((h >> 16) & 191)];
}

function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export default {
  template: `<div ref="wrap" tabindex="0" class="mcp-canvas"
      style="position:relative;overflow:hidden;width:100%;height:100%;outline:none;background:#111;cursor:crosshair"
      @contextmenu.prevent @mousedown="$refs.wrap.focus({preventScroll:true})">
      <canvas ref="view" style="position:absolute;left:0;top:0"></canvas>
      <div ref="readout" class="mcp-readout" style="position:absolute;left:0;bottom:0;padding:1px 6px;font:11px monospace;
        color:#eee;background:rgba(0,0,0,0.6);pointer-events:none;white-space:nowrap"></div>
    </div>`,
  props: {
    colorMode: { type: String, default: "class" },
    overlay: { type: Boolean, default: true },
    tool: { type: String, default: "select" },
    brush: { type: Number, default: 6 },
    currentClass: { type: Number, default: 1 },
    fillAlpha: { type: Number, default: FILL_ALPHA },
    outline: { type: Boolean, default: false }, // outlines only, no fill
    opacity: { type: Number, default: 1 }, // of the whole mask overlay
    classNames: { type: Array, default: () => [] },
  },
  data() {
    return { loaded: false };
  },
  mounted() {
    this.W = 0;
    this.H = 0;
    this.labels = new Uint32Array(0);
    this.classes = new Uint32Array(1);
    this.palette = [[128, 128, 128]];
    this.selection = new Set();
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.imgCanvas = document.createElement("canvas");
    this.ovTiles = []; // {x, y, w, h, canvas, ctx, ready, coarse} covering the image (see renderOverlay)
    this.path = null; // points of the stroke being drawn (image coordinates)
    this.mode = null; // contour | lasso | rect | erase | split | pan
    this.pending = null; // performance.now() of the last finished action
    this.cursor = null;
    this.pluginLayers = []; // measurement plugins' overlay layers, image coordinates (see setPluginLayers)
    window.mcpLatency = window.mcpLatency || [];
    window.mcpCanvas = this; // the page's canvas, for browser tests and benchmarks
    const view = this.$refs.view;
    view.addEventListener("mousedown", this.onDown);
    window.addEventListener("mousemove", this.onMove);
    window.addEventListener("mouseup", this.onUp);
    view.addEventListener("wheel", this.onWheel, { passive: false });
    this.$refs.wrap.addEventListener("keydown", this.onKey);
    this.$refs.wrap.addEventListener("keyup", (e) => { if (e.key === " ") this.spaceDown = false; });
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(this.$refs.wrap);
    this.resize();
    this.$emit("ready", {});
  },
  unmounted() {
    window.removeEventListener("mousemove", this.onMove);
    window.removeEventListener("mouseup", this.onUp);
    this.resizeObserver.disconnect();
    clearTimeout(this.ovTimer);
  },
  watch: {
    colorMode() { this.renderBox(0, 0, this.W, this.H); this.draw(); },
    fillAlpha() { this.renderBox(0, 0, this.W, this.H); this.draw(); },
    outline() { this.renderBox(0, 0, this.W, this.H); this.draw(); },
    opacity() { this.draw(); },
    overlay() { this.draw(); },
    tool() { this.path = null; this.mode = null; this.draw(); },
    brush() { this.draw(); },
  },
  methods: {
    // ------------------------------------------------------------ called from Python
    async load(pixelsUrl, labelsUrl, classes, colors, keepView, pixels) {
      // pixels: {width, height, channels, dtype: uint8|uint16|float32, display: {rgb, low, high},
      //          levels: [[h, w], ...] full resolution first, level: the one pixelsUrl sends, tile, tileUrl}.
      // A large image comes as a coarser level (the overview); tiles of finer levels are fetched where zoomed in.
      const levels = pixels.levels || [[pixels.height, pixels.width]], level = pixels.level || 0;
      const [rawH, rawW] = levels[level];
      const t0 = performance.now();
      const [raw, buf] = await Promise.all([this.fetchPixels(pixelsUrl, pixels, rawW * rawH),
                                            this.fetchLabels(labelsUrl, pixels.width * pixels.height)]);
      const t1 = performance.now();
      const sizeChanged = pixels.width !== this.W || pixels.height !== this.H;
      this.W = pixels.width;
      this.H = pixels.height;
      this.raw = raw;
      this.pyramid = { levels, level, tile: pixels.tile, tileUrl: pixels.tileUrl, dtype: pixels.dtype,
                       channels: pixels.channels, tiles: new Map() };
      this.rawW = rawW;
      this.rawH = rawH;
      this.imgCanvas.width = rawW;
      this.imgCanvas.height = rawH;
      this.imgCtx = this.imgCanvas.getContext("2d");
      this.imgData = this.imgCtx.createImageData(rawW, rawH);
      this.display = pixels.display;
      this.renderImage();
      const t2 = performance.now();
      this.labels = buf;
      this.pluginLayers = [];
      if (sizeChanged || !this.ovData) this.makeOverlay();
      this.selection.clear();
      this.path = null;
      this.mode = null;
      this.setClassTable(classes, colors, false);
      if (sizeChanged || !keepView) this.fit();
      this.renderOverlay();
      const t3 = performance.now();
      this.loaded = true;
      this.draw();
      window.mcpLoadedAt = performance.now();
      // where a load's time went (ms): fetching the pixels and labels, the image's colours, the mask overlay, the view
      (window.mcpLoadPhases = window.mcpLoadPhases || []).push({ fetch: t1 - t0, image: t2 - t1, overlay: t3 - t2,
                                                                 view: window.mcpLoadedAt - t3 });
      return { width: this.W, height: this.H };
    },
    async setPluginLayers(layers) {
      // [{kind: points|lines|outlines|labels, color, data}]: points [[x, y]], lines/outlines [[[x, y], ...]],
      // labels a PNG data URL of the whole image; x, y in image pixels (pixel (i, j) spans [j, j+1] x [i, i+1]).
      this.pluginLayers = await Promise.all(layers.map((l) => l.kind !== "labels" ? l : new Promise((ok, fail) => {
        const img = new Image();
        img.onload = () => ok({ ...l, image: img });
        img.onerror = fail;
        img.src = l.data;
      })));
      this.draw();
      return this.pluginLayers.length;
    },
    drawPluginLayers(ctx) {
      ctx.lineWidth = 1.5 / this.scale;
      for (const l of this.pluginLayers) {
        if (l.kind === "labels") { ctx.drawImage(l.image, 0, 0); continue; }
        ctx.strokeStyle = l.color;
        ctx.fillStyle = l.color;
        if (l.kind === "points") {
          for (const [x, y] of l.data) { ctx.beginPath(); ctx.arc(x, y, 3 / this.scale, 0, 2 * Math.PI); ctx.fill(); }
          continue;
        }
        for (const path of l.data) {
          ctx.beginPath();
          path.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
          if (l.kind === "outlines") ctx.closePath();
          ctx.stroke();
        }
      }
    },
    setDisplay(display) {
      // display: {rgb: [channel or null] x 3, low: [...], high: [...]} per channel; drawn here, no server round trip.
      this.display = display;
      this.renderImage();
      this.renderTiles();
      this.draw();
      return true;
    },
    setLimits(channel, low, high) {
      this.display.low[channel] = low;
      this.display.high[channel] = Math.max(high, low + 1e-6);
      this.renderImage();
      this.renderTiles();
      this.draw();
    },
    renderImage() {
      // The level held (the overview of a large image) through the display into the image canvas.
      if (!this.raw || !this.imgData) return;
      const t0 = performance.now();
      this.paint(this.raw, this.imgData);
      this.imgCtx.putImageData(this.imgData, 0, 0);
      (window.mcpDisplayMs = window.mcpDisplayMs || []).push(performance.now() - t0);
    },
    paint(raw, imgData) {
      // Raw channels (one typed array each, of imgData's size) through the display's channel choice and contrast
      // limits into RGBA pixels: each colour is a lookup table over its channel's values, each pixel one 32-bit write.
      const n = imgData.width * imgData.height, { rgb, low, high } = this.display;
      const used = rgb.filter((c) => c !== null && c !== undefined && c < raw.length);
      const pick = used.length === 1 ? [used[0], used[0], used[0]] : rgb; // one channel: grey
      const [[sr, lr], [sg, lg], [sb, lb]] = pick.map((c) => this.channelLut(raw, n, c, low[c], high[c]));
      const out = new Uint32Array(imgData.data.buffer);
      for (let i = 0; i < n; i++) out[i] = 0xff000000 | (lb[sb[i]] << 16) | (lg[sg[i]] << 8) | lr[sr[i]];
    },
    channelLut(raw, n, c, lo, hi) {
      // [values, lut] with lut[values[i]] the 0..255 shade of pixel i (of n) for channel c between lo and hi (an
      // absent channel is black); float channels are scaled into 8 bits first.
      if (c === null || c === undefined || c >= raw.length) {
        if (!this.black || this.black.length !== n) this.black = new Uint8Array(n);
        return [this.black, new Uint8Array(1)];
      }
      const src = raw[c], f = 255 / (hi - lo);
      if (src instanceof Float32Array) {
        const shade = new Uint8ClampedArray(n);
        for (let i = 0; i < n; i++) shade[i] = (src[i] - lo) * f;
        return [shade, Uint8Array.from({ length: 256 }, (_, v) => v)];
      }
      const lut = new Uint8ClampedArray(src instanceof Uint8Array ? 256 : 65536);
      for (let v = 0; v < lut.length; v++) lut[v] = (v - lo) * f;
      return [src, lut];
    },
    // --------------------------------------------------------- large images: tiles of finer levels
    levelFor(scale) {
      // The coarsest level with at least one pixel per screen pixel at this zoom.
      const { levels } = this.pyramid;
      let best = 0;
      for (let l = 0; l < levels.length; l++) if ((this.W / levels[l][1]) * scale <= 1 + 1e-9) best = l;
      return best;
    },
    drawTiles(ctx) {
      // Over the overview, the tiles of the level this zoom needs that are in view (fetched once, kept).
      const pyr = this.pyramid;
      if (!pyr || pyr.level === 0) return;
      const level = this.levelFor(this.scale);
      if (level >= pyr.level) return; // the overview is fine enough
      const [lh, lw] = pyr.levels[level], T = pyr.tile, fx = this.W / lw, fy = this.H / lh, view = this.$refs.view;
      const x0 = -this.tx / this.scale, y0 = -this.ty / this.scale;
      const x1 = (view.width - this.tx) / this.scale, y1 = (view.height - this.ty) / this.scale;
      const c0 = Math.max(0, Math.floor(x0 / fx / T)), c1 = Math.min(Math.ceil(lw / T) - 1, Math.floor(x1 / fx / T));
      const r0 = Math.max(0, Math.floor(y0 / fy / T)), r1 = Math.min(Math.ceil(lh / T) - 1, Math.floor(y1 / fy / T));
      for (let ty = r0; ty <= r1; ty++) {
        for (let tx = c0; tx <= c1; tx++) {
          const key = `${level}/${ty}/${tx}`, tile = pyr.tiles.get(key);
          if (!tile) this.fetchTile(level, ty, tx, key);
          else if (tile.canvas) ctx.drawImage(tile.canvas, tx * T * fx, ty * T * fy, tile.w * fx, tile.h * fy);
        }
      }
    },
    async fetchTile(level, ty, tx, key) {
      const pyr = this.pyramid, [lh, lw] = pyr.levels[level], T = pyr.tile;
      const tile = { w: Math.min(T, lw - tx * T), h: Math.min(T, lh - ty * T) };
      pyr.tiles.set(key, tile);
      if (pyr.tiles.size > 256) pyr.tiles.delete(pyr.tiles.keys().next().value); // the oldest goes
      const url = pyr.tileUrl.replace("{level}", level).replace("{ty}", ty).replace("{tx}", tx);
      try {
        tile.raw = await this.fetchPixels(url, pyr, tile.w * tile.h);
      } catch (err) {
        console.warn(String(err)); // the tile stays out (the overview shows there); not asked for again
        return;
      }
      if (this.pyramid !== pyr) return; // another image was loaded meanwhile
      tile.canvas = document.createElement("canvas");
      tile.canvas.width = tile.w;
      tile.canvas.height = tile.h;
      this.renderTile(tile);
      this.draw();
    },
    renderTile(tile) {
      const ctx = tile.canvas.getContext("2d"), data = ctx.createImageData(tile.w, tile.h);
      this.paint(tile.raw, data);
      ctx.putImageData(data, 0, 0);
    },
    renderTiles() {
      if (this.pyramid) for (const tile of this.pyramid.tiles.values()) if (tile.canvas) this.renderTile(tile);
    },
    setClassTable(classes, colors, render = true) {
      this.classes = Uint32Array.from(classes);
      this.palette = colors.map(hexToRgb);
      if (render) this.renderBox(0, 0, this.W, this.H);
    },
    applyPatch(patch) {
      // patch: {x, y, w, h, data: base64 uint32 LE ids of the box, or runIds and runLengths: those ids in runs
      // along the box's rows, or cleared: ids whose pixels in the box became background; classes?: the class of every id, or classAt, classTo, classCount: the entries that
      // changed and the table's length; colors?: [...]; ms?: the server's time on the edit}
      const t0 = performance.now();
      if (patch.classes) this.classes = Uint32Array.from(patch.classes);
      if (patch.classAt) {
        if (patch.classCount !== this.classes.length) {
          const table = new Uint32Array(patch.classCount);
          table.set(this.classes.subarray(0, Math.min(patch.classCount, this.classes.length)));
          this.classes = table;
        }
        patch.classAt.forEach((id, k) => { this.classes[id] = patch.classTo[k]; });
      }
      if (patch.colors) this.palette = patch.colors.map(hexToRgb);
      // 16-bit ids until the class table (one entry per id) outgrows them: widened once, before the new ids land
      if (this.labels.BYTES_PER_ELEMENT === 2 && this.classes.length > 65536) this.labels = Uint32Array.from(this.labels);
      if (patch.w > 0 && patch.h > 0) {
        if (patch.data) {
          const ids = new Uint32Array(b64ToBytes(patch.data).buffer);
          for (let r = 0; r < patch.h; r++) {
            this.labels.set(ids.subarray(r * patch.w, (r + 1) * patch.w), (patch.y + r) * this.W + patch.x);
          }
        } else if (patch.runIds) { // the box's ids in runs along its rows
          const L = this.labels, ids = patch.runIds, lengths = patch.runLengths;
          let k = 0, left = 0, id = 0;
          for (let r = 0; r < patch.h; r++) {
            for (let i = (patch.y + r) * this.W + patch.x, end = i + patch.w; i < end; i++, left--) {
              if (left === 0) { id = ids[k]; left = lengths[k]; k++; }
              L[i] = id;
            }
          }
        } else if (patch.cleared) {
          let top = this.classes.length;
          for (const id of patch.cleared) top = Math.max(top, id + 1);
          const gone = new Uint8Array(top), L = this.labels; // a lookup per pixel, not a Set's hashing
          for (const id of patch.cleared) gone[id] = 1;
          for (let r = 0; r < patch.h; r++) {
            for (let i = (patch.y + r) * this.W + patch.x, end = i + patch.w; i < end; i++) if (gone[L[i]]) L[i] = 0;
          }
        }
        for (const id of [...this.selection]) if (id >= this.classes.length) this.selection.delete(id);
        this.renderBox(patch.x - 1, patch.y - 1, patch.w + 2, patch.h + 2);
      }
      this.draw(patch.w > 0 && patch.h > 0 && !patch.colors ? [patch.x - 1, patch.y - 1, patch.w + 2, patch.h + 2] : null);
      if (this.pending !== null) {
        const now = performance.now();
        window.mcpLatency.push(now - this.pending);
        // where the time went: the server's edit, the round trip to the server besides it (transfers, queues),
        // this drawing
        (window.mcpPhases = window.mcpPhases || []).push({ server: patch.ms || 0, trip: t0 - this.pending - (patch.ms || 0),
                                                           page: now - t0 });
        this.pending = null;
      }
      return true;
    },
    setSelection(ids) {
      this.selection = new Set(ids);
      this.renderBox(0, 0, this.W, this.H);
      this.draw();
    },
    highlight(id) {
      // Centre the view on a mask and select it.
      let sx = 0, sy = 0, n = 0;
      for (let i = 0; i < this.labels.length; i++) {
        if (this.labels[i] === id) { sx += i % this.W; sy += (i / this.W) | 0; n++; }
      }
      if (!n) return false;
      const rect = this.$refs.wrap.getBoundingClientRect();
      this.fitted = false;
      this.tx = rect.width / 2 - (sx / n) * this.scale;
      this.ty = rect.height / 2 - (sy / n) * this.scale;
      this.setSelection([id]);
      return true;
    },
    fit() {
      const rect = this.$refs.wrap.getBoundingClientRect();
      if (!this.W || !rect.width) return;
      this.scale = Math.min(rect.width / this.W, rect.height / this.H);
      this.tx = (rect.width - this.W * this.scale) / 2;
      this.ty = (rect.height - this.H * this.scale) / 2;
      this.fitted = true; // until the user zooms or pans: a resized view then fits again
      this.draw();
    },
    toScreen(x, y) {
      // Client coordinates of image pixel (x, y): for browser tests and benchmarks.
      const rect = this.$refs.view.getBoundingClientRect();
      return [rect.left + this.tx + x * this.scale, rect.top + this.ty + y * this.scale];
    },
    viewState() {
      return { scale: this.scale, tx: this.tx, ty: this.ty, W: this.W, H: this.H, selection: [...this.selection] };
    },
    // ------------------------------------------------------------------- loading
    async fetchPixels(url, pixels, n) {
      // n planar channels, little-endian, of pixels.dtype: one typed array per channel.
      const resp = await fetch(url);
      if (!resp.ok) throw new Error("image failed to load: " + resp.status);
      const buf = await resp.arrayBuffer();
      const Type = { uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array }[pixels.dtype];
      return Array.from({ length: pixels.channels }, (_, c) => new Type(buf, c * n * Type.BYTES_PER_ELEMENT, n));
    },
    async fetchLabels(url, n) {
      // n ids: 16-bit when they come as 2 bytes each (every id below 65536), else 32-bit; a view, not a copy.
      const resp = await fetch(url);
      if (!resp.ok) throw new Error("labels failed to load: " + resp.status);
      const buf = await resp.arrayBuffer();
      return buf.byteLength === 2 * n ? new Uint16Array(buf) : new Uint32Array(buf);
    },
    // ----------------------------------------------------------------- rendering
    colorOf(id) {
      if (this.colorMode === "instance") return instanceColor(id);
      const cls = id < this.classes.length ? this.classes[id] : 0;
      return this.palette[cls] || this.palette[0];
    },
    renderBox(x0, y0, w, h) {
      // Paint the box into the overlay and show it: on each overlay tile it overlaps, the box's part, or the whole
      // tile when that was not painted yet (see renderOverlay).
      if (!this.ovData) return;
      x0 = Math.max(0, x0); y0 = Math.max(0, y0);
      const x1 = Math.min(this.W, x0 + w), y1 = Math.min(this.H, y0 + h);
      this.paintOverlay(x0, y0, x1, y1);
      for (const t of this.ovTiles) {
        let ax = Math.max(x0, t.x), ay = Math.max(y0, t.y), bx = Math.min(x1, t.x + t.w), by = Math.min(y1, t.y + t.h);
        if (!(ax < bx && ay < by)) continue;
        if (!t.ready) { // the tile's first painting in full: the rest of it too
          if (bx - ax < t.w || by - ay < t.h) this.paintOverlay(t.x, t.y, t.x + t.w, t.y + t.h);
          [ax, ay, bx, by] = [t.x, t.y, t.x + t.w, t.y + t.h];
          t.ready = true;
          t.coarse = null;
        }
        t.ctx.putImageData(this.ovData, -t.x, -t.y, ax, ay, bx - ax, by - ay);
      }
    },
    renderOverlay() {
      // The whole overlay, soon: the tiles in view now (when the view shrinks them to half or less, at that coarser
      // resolution: a quarter of the pixels or fewer), then every tile in full one at a time after the frame, those
      // in view first. An edit paints the tiles it touches in full at once (renderBox).
      clearTimeout(this.ovTimer);
      const step = Math.floor(1 / this.scale), seen = this.inView();
      for (const t of this.ovTiles) {
        t.ready = false;
        t.coarse = null;
        if (!seen(t)) continue;
        if (step >= 2) this.paintCoarse(t, step);
        else this.renderBox(t.x, t.y, t.w, t.h);
      }
      const todo = [...this.ovTiles.filter(seen), ...this.ovTiles.filter((t) => !seen(t))];
      const next = () => {
        const t = todo.find((u) => !u.ready);
        if (!t) return;
        this.renderBox(t.x, t.y, t.w, t.h);
        this.draw();
        this.ovTimer = setTimeout(next, 0);
      };
      this.ovTimer = setTimeout(next, 0);
    },
    inView() {
      // (tile) => whether any of the tile ({x, y, w, h} in image pixels) is in the view
      const view = this.$refs.view, x0 = -this.tx / this.scale, y0 = -this.ty / this.scale;
      const x1 = (view.width - this.tx) / this.scale, y1 = (view.height - this.ty) / this.scale;
      return (t) => t.x < x1 && t.x + t.w > x0 && t.y < y1 && t.y + t.h > y0;
    },
    overlayWords() {
      // (id) => [inner, border]: the RGBA words of a mask's inside and edge pixels (little-endian: red in the low
      // byte), as the class table, palette, colour mode, fill and selection now say.
      const fill = this.fillAlpha, outline = this.outline, sel = this.selection, hasSel = sel.size > 0;
      const byClass = this.colorMode !== "instance", classes = this.classes, palette = this.palette;
      const word = (c, a) => (c[0] | (c[1] << 8) | (c[2] << 16) | (a << 24)) >>> 0;
      const white = word([255, 255, 255], 255), both = [0, 0];
      return (id) => {
        const col = byClass ? palette[id < classes.length ? classes[id] : 0] || palette[0] : instanceColor(id);
        const selected = hasSel && sel.has(id);
        both[0] = word(col, selected ? Math.min(255, fill + 70) : outline ? 0 : fill);
        both[1] = selected ? white : word(col, EDGE_ALPHA);
        return both;
      };
    },
    paintOverlay(x0, y0, x1, y1) {
      // The overlay's pixels of the box [x0, x1) x [y0, y1) from the labels, one 32-bit word each; everything read
      // once out of the loop: the component's fields are reactive proxies, slow to read per pixel.
      const W = this.W, H = this.H, L = this.labels, out = new Uint32Array(this.ovData.data.buffer);
      const wordsOf = this.overlayWords();
      let lastId = -1, inner = 0, border = 0;
      for (let y = y0; y < y1; y++) {
        const up = y > 0 ? W : 0, down = y < H - 1 ? W : 0; // 0: the pixel itself, never an edge
        let i = y * W + x0;
        for (let x = x0; x < x1; x++, i++) {
          const id = L[i];
          if (id === 0) { out[i] = 0; continue; }
          if (id !== lastId) { const words = wordsOf(id); inner = words[0]; border = words[1]; lastId = id; }
          const edge = L[i - up] !== id || L[i + down] !== id || (x > 0 && L[i - 1] !== id) || (x < W - 1 && L[i + 1] !== id);
          out[i] = edge ? border : inner;
        }
      }
    },
    paintCoarse(t, step) {
      // A tile's overlay from every step-th pixel each way, edges against the pixels step away, on a canvas of its
      // own (t.coarse) that draw() stretches over the tile until the tile is painted in full.
      const W = this.W, H = this.H, L = this.labels, w = Math.ceil(t.w / step), h = Math.ceil(t.h / step);
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d"), data = ctx.createImageData(w, h), out = new Uint32Array(data.data.buffer);
      const wordsOf = this.overlayWords();
      let lastId = -1, inner = 0, border = 0, k = 0;
      for (let y = t.y; y < t.y + t.h; y += step) {
        const up = y >= step ? step * W : 0, down = y + step < H ? step * W : 0;
        for (let x = t.x, i = y * W + t.x; x < t.x + t.w; x += step, i += step, k++) {
          const id = L[i];
          if (id === 0) continue;
          if (id !== lastId) { const words = wordsOf(id); inner = words[0]; border = words[1]; lastId = id; }
          const edge = L[i - up] !== id || L[i + down] !== id || (x >= step && L[i - step] !== id) ||
                       (x + step < W && L[i + step] !== id);
          out[k] = edge ? border : inner;
        }
      }
      ctx.putImageData(data, 0, 0);
      t.coarse = canvas;
    },
    makeOverlay() {
      // The overlay's pixels (ovData, one RGBA word per image pixel) and the canvases that show them, in tiles.
      this.ovData = new ImageData(this.W, this.H);
      this.ovTiles = [];
      for (let y = 0; y < this.H; y += OV_TILE) {
        for (let x = 0; x < this.W; x += OV_TILE) {
          const canvas = document.createElement("canvas");
          canvas.width = Math.min(OV_TILE, this.W - x);
          canvas.height = Math.min(OV_TILE, this.H - y);
          this.ovTiles.push({ x, y, w: canvas.width, h: canvas.height, canvas, ctx: canvas.getContext("2d") });
        }
      }
    },
    resize() {
      const rect = this.$refs.wrap.getBoundingClientRect();
      const view = this.$refs.view;
      view.width = Math.max(1, rect.width);
      view.height = Math.max(1, rect.height);
      if (this.fitted) this.fit();
      else this.draw();
    },
    draw(box = null) {
      // The view; with box ([x, y, w, h] in image pixels: an edit's), only the screen pixels over it (the rest is as
      // drawn: a large image's view is many tiles to draw again).
      const view = this.$refs.view;
      if (!view) return;
      const ctx = view.getContext("2d");
      ctx.save();
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      if (box) {
        const x = Math.floor(this.tx + box[0] * this.scale), y = Math.floor(this.ty + box[1] * this.scale);
        ctx.beginPath();
        ctx.rect(x, y, Math.ceil(this.tx + (box[0] + box[2]) * this.scale) - x,
                 Math.ceil(this.ty + (box[1] + box[3]) * this.scale) - y);
        ctx.clip();
      }
      this.paintView(ctx, view);
      ctx.restore();
    },
    paintView(ctx, view) {
      ctx.clearRect(0, 0, view.width, view.height);
      if (!this.W) return;
      ctx.imageSmoothingEnabled = false;
      ctx.setTransform(this.scale, 0, 0, this.scale, this.tx, this.ty);
      ctx.drawImage(this.imgCanvas, 0, 0, this.W, this.H);
      this.drawTiles(ctx);
      if (this.overlay) {
        ctx.globalAlpha = this.opacity;
        const seen = this.inView();
        for (const t of this.ovTiles) {
          if (!seen(t)) continue;
          if (t.ready) ctx.drawImage(t.canvas, t.x, t.y);
          else if (t.coarse) ctx.drawImage(t.coarse, t.x, t.y, t.w, t.h);
        }
        ctx.globalAlpha = 1;
      }
      this.drawPluginLayers(ctx);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      const toScreen = (p) => [p[0] * this.scale + this.tx, p[1] * this.scale + this.ty];
      if (this.path && this.path.length) {
        ctx.lineWidth = 2;
        ctx.strokeStyle = this.mode === "lasso" ? "#ff4040" : this.mode === "split" ? "#ffd000" :
          this.mode === "erase" ? "rgba(255,255,255,0.5)" : "#ffffff";
        if (this.mode === "rect") {
          const a = toScreen(this.path[0]), b = toScreen(this.path[this.path.length - 1]);
          ctx.setLineDash([5, 4]);
          ctx.strokeRect(a[0], a[1], b[0] - a[0], b[1] - a[1]);
          ctx.setLineDash([]);
        } else {
          if (this.mode === "erase") ctx.lineWidth = 2 * this.brush * this.scale;
          ctx.lineCap = "round";
          ctx.lineJoin = "round";
          ctx.beginPath();
          this.path.forEach((p, k) => { const s = toScreen(p); k ? ctx.lineTo(s[0], s[1]) : ctx.moveTo(s[0], s[1]); });
          if (this.mode === "lasso") ctx.closePath();
          ctx.stroke();
          if (this.mode === "contour") {
            const s = toScreen(this.path[0]);
            ctx.beginPath();
            ctx.arc(s[0], s[1], CLOSE_PX, 0, 2 * Math.PI);
            ctx.stroke();
          }
        }
      }
      if (this.tool === "eraser" && this.cursor) {
        const s = toScreen(this.cursor);
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.arc(s[0], s[1], this.brush * this.scale, 0, 2 * Math.PI);
        ctx.stroke();
      }
    },
    // -------------------------------------------------------------------- input
    toImage(e) {
      const rect = this.$refs.view.getBoundingClientRect();
      return [(e.clientX - rect.left - this.tx) / this.scale, (e.clientY - rect.top - this.ty) / this.scale];
    },
    idAt(p) {
      const x = Math.floor(p[0]), y = Math.floor(p[1]);
      if (x < 0 || y < 0 || x >= this.W || y >= this.H) return 0;
      return this.labels[y * this.W + x];
    },
    onDown(e) {
      if (!this.loaded) return;
      const p = this.toImage(e);
      this.downAt = [e.clientX, e.clientY];
      if (e.button === 2) {
        if (this.mode === "contour") { this.finishContour(); return; }
        this.mode = "contour";
        this.path = [p];
        this.movedAway = false;
        this.draw();
        return;
      }
      if (this.mode === "contour") return; // tracing: ignore other buttons
      if (e.button === 1 || this.tool === "pan" || this.spaceDown) {
        this.mode = "pan";
        this.panFrom = [e.clientX - this.tx, e.clientY - this.ty];
        e.preventDefault();
        return;
      }
      if (e.button !== 0) return;
      if (e.ctrlKey || e.metaKey || e.shiftKey) {
        this.modClick = { ctrl: e.ctrlKey || e.metaKey, shift: e.shiftKey, p };
        return;
      }
      const modes = { select: "rect", lasso: "lasso", eraser: "erase", split: "split" };
      this.mode = modes[this.tool] || "rect";
      this.path = [p];
      this.draw();
    },
    onMove(e) {
      if (!this.loaded) return;
      const p = this.toImage(e);
      this.cursor = p;
      if (e.target === this.$refs.view) this.showReadout(p);
      else if (this.$refs.readout.textContent) this.$refs.readout.textContent = ""; // the cursor left the image
      if (this.mode === "pan") {
        this.fitted = false;
        this.tx = e.clientX - this.panFrom[0];
        this.ty = e.clientY - this.panFrom[1];
        this.draw();
        return;
      }
      if (!this.mode || !this.path) { if (this.tool === "eraser") this.draw(); return; }
      const last = this.path[this.path.length - 1];
      if (Math.hypot(p[0] - last[0], p[1] - last[1]) * this.scale < 2) return;
      if (this.mode === "rect") this.path = [this.path[0], p];
      else this.path.push(p);
      if (this.mode === "contour") {
        const s0 = this.path[0];
        const dist = Math.hypot(p[0] - s0[0], p[1] - s0[1]) * this.scale;
        if (dist > 3 * CLOSE_PX) this.movedAway = true;
        if (this.movedAway && dist < CLOSE_PX && this.path.length > 4) { this.finishContour(); return; }
      }
      this.draw();
    },
    onUp(e) {
      if (!this.loaded) return;
      if (this.modClick) {
        const { ctrl, shift, p } = this.modClick;
        this.modClick = null;
        const id = this.idAt(p);
        if (!id) return;
        this.pending = performance.now();
        if (ctrl) this.$emit("delete", { ids: [id] });
        else if (shift) {
          const ids = this.selection.has(id) ? [...this.selection] : [id];
          this.$emit("assign", { ids, class_id: this.currentClass });
        }
        return;
      }
      const mode = this.mode;
      if (!mode || mode === "contour") return;
      const path = this.path || [];
      this.mode = null;
      this.path = null;
      if (mode === "pan") return;
      const moved = this.downAt && Math.hypot(e.clientX - this.downAt[0], e.clientY - this.downAt[1]) > 3;
      if (mode === "rect") {
        if (!moved) {
          const id = this.idAt(path[0]);
          this.setSelection(id ? [id] : []);
        } else {
          this.setSelection(this.idsInRect(path[0], path[path.length - 1]));
        }
        this.$emit("select", { ids: [...this.selection] });
      } else if (mode === "lasso" && path.length > 2) {
        this.pending = performance.now();
        this.$emit("lasso", { points: path });
      } else if (mode === "erase") {
        this.pending = performance.now();
        this.$emit("erase", { points: path, radius: this.brush });
      } else if (mode === "split" && path.length > 1) {
        const id = this.dominantIdAlong(path);
        if (id) { this.pending = performance.now(); this.$emit("split", { id, points: path }); }
      }
      this.draw();
    },
    finishContour() {
      const path = this.path;
      this.mode = null;
      this.path = null;
      if (path && path.length > 2) { // sent before the redraw: the server works meanwhile
        this.pending = performance.now();
        this.$emit("polygon", { points: path, class_id: this.currentClass });
      }
      this.draw();
    },
    idsInRect(a, b) {
      const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]))), x1 = Math.min(this.W, Math.ceil(Math.max(a[0], b[0])));
      const y0 = Math.max(0, Math.floor(Math.min(a[1], b[1]))), y1 = Math.min(this.H, Math.ceil(Math.max(a[1], b[1])));
      const ids = new Set();
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) { const id = this.labels[y * this.W + x]; if (id) ids.add(id); }
      return [...ids];
    },
    dominantIdAlong(path) {
      const counts = new Map();
      for (let k = 1; k < path.length; k++) {
        const [x0, y0] = path[k - 1], [x1, y1] = path[k];
        const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
        for (let s = 0; s <= n; s++) {
          const id = this.idAt([x0 + (x1 - x0) * s / n, y0 + (y1 - y0) * s / n]);
          if (id) counts.set(id, (counts.get(id) || 0) + 1);
        }
      }
      let best = 0, bestN = 0;
      counts.forEach((n, id) => { if (n > bestN) { best = id; bestN = n; } });
      return best;
    },
    showReadout(p) {
      // What is under the cursor, as napari shows it: position, each channel's value, mask id and class.
      const x = Math.floor(p[0]), y = Math.floor(p[1]);
      if (x < 0 || y < 0 || x >= this.W || y >= this.H || !this.raw) { this.$refs.readout.textContent = ""; return; }
      const i = y * this.W + x, id = this.labels[i];
      const fmt = (v) => (Number.isInteger(v) ? String(v) : v.toPrecision(4));
      const [raw, exact] = this.valuesAt(x, y);
      const values = raw.map((v, c) => `ch${c} ${exact ? "" : "~"}${fmt(v)}`).join("  ");
      const cls = id ? this.classNames[id < this.classes.length ? this.classes[id] : 0] || "unassigned" : "";
      this.$refs.readout.textContent = `x ${x}  y ${y}  ${values}` + (id ? `  mask ${id}  ${cls}` : "  background");
    },
    valuesAt(x, y) {
      // [each channel's value at full-resolution pixel (x, y), whether exact]: from a full-resolution tile when
      // one holds it, else from the overview's pixel that covers it (exact when the overview is full resolution).
      const pyr = this.pyramid, T = pyr ? pyr.tile : 0;
      const tile = pyr && pyr.level > 0 ? pyr.tiles.get(`0/${Math.floor(y / T)}/${Math.floor(x / T)}`) : null;
      if (tile && tile.raw) return [tile.raw.map((ch) => ch[(y % T) * tile.w + (x % T)]), true];
      const r = Math.floor((y * this.rawH) / this.H) * this.rawW + Math.floor((x * this.rawW) / this.W);
      return [this.raw.map((ch) => ch[r]), this.rawW === this.W && this.rawH === this.H];
    },
    onWheel(e) {
      e.preventDefault();
      this.fitted = false;
      const rect = this.$refs.view.getBoundingClientRect();
      const mx = e.clientX - rect.left, my = e.clientY - rect.top;
      const f = Math.exp(-e.deltaY * 0.0015);
      const s = Math.min(64, Math.max(0.02, this.scale * f));
      this.tx = mx - (mx - this.tx) * (s / this.scale);
      this.ty = my - (my - this.ty) * (s / this.scale);
      this.scale = s;
      this.draw();
    },
    onKey(e) {
      if (e.key === "," || e.key === ".") {
        const b = Math.max(1, Math.min(200, this.brush + (e.key === "." ? 1 : -1) * Math.max(1, Math.round(this.brush * 0.2))));
        this.$emit("brush", { size: b });
        e.preventDefault();
      } else if (e.key === "Escape") {
        this.mode = null;
        this.path = null;
        this.setSelection([]);
      } else if (e.key === " ") {
        this.spaceDown = true;
        e.preventDefault();
      } else if (e.key === "f") {
        this.fit();
      }
    },
  },
};
