// Annotation canvas: the browser holds the label image and draws it; Python owns the labels.
// The browser fetches the label ids once (raw little-endian uint16, or uint32 past 65535 ids, gzip over HTTP), colours them
// itself (by class or by instance), draws contours, lassos and selections locally, and emits only
// finished actions. Python answers an edit with a patch of the changed box. A new contour, a deletion, a class
// assignment and a lasso are drawn here at once, by the server's rules (the same pixels, ids and masks), and settled
// by the server's patch: the patch wins where it differs, a refused edit is taken back, a failed one fetches the
// labels again (see optimistic, applyPatch, resync).

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

const NEAR = 1e-6; // crossings this close to a pixel are decided by inPolygon, as mcp_core/labels/polygon.py does
const VERTEX_EPS = 1e-12;

function roundHalfEven(v) {
  // numpy's rounding (half to even), which the server's outlines use
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function inPolygon(x, y, xp, yp) {
  // Whether (x, y) is inside, on an edge or on a vertex of the polygon (xp, yp): skimage.draw.polygon's test, with
  // the arithmetic of mcp_core/labels/polygon.py in_polygon.
  let right = 0, left = 0;
  for (let i = 0, n = xp.length; i < n; i++) {
    const j = i === 0 ? n - 1 : i - 1;
    const x0 = xp[i] - x, y0 = yp[i] - y, x1 = xp[j] - x, y1 = yp[j] - y;
    if (Math.abs(x0) < VERTEX_EPS && Math.abs(y0) < VERTEX_EPS) return true;
    const at = (x0 * y1 - x1 * y0) / (y1 - y0);
    if ((y0 > 0) !== (y1 > 0) && at > 0) right++;
    if ((y0 < 0) !== (y1 < 0) && at < 0) left++;
  }
  return right % 2 === 1 || left % 2 === 1;
}

function fillPolygon(xp, yp, W, H) {
  // The pixels inside a polygon clipped to a W x H image, as mcp_core/labels/polygon.py polygon_box gives them:
  // {x0, y0, w, h, inside: Uint8Array(w * h)}, or null when none can be.
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < xp.length; i++) {
    minX = Math.min(minX, xp[i]); maxX = Math.max(maxX, xp[i]);
    minY = Math.min(minY, yp[i]); maxY = Math.max(maxY, yp[i]);
  }
  const y0 = Math.max(Math.floor(minY), 0), y1 = Math.min(Math.ceil(maxY), H - 1) + 1;
  const x0 = Math.max(Math.floor(minX), 0), x1 = Math.min(Math.ceil(maxX), W - 1) + 1;
  if (y1 <= y0 || x1 <= x0) return null;
  const w = x1 - x0, h = y1 - y0, inside = new Uint8Array(w * h), n = xp.length, vertexYs = new Set(yp);
  const at = [];
  for (let r = 0; r < h; r++) {
    const y = y0 + r, row = r * w;
    if (vertexYs.has(y)) { // a row through a vertex: every pixel by the exact test
      for (let x = x0; x < x1; x++) inside[row + x - x0] = inPolygon(x, y, xp, yp) ? 1 : 0;
      continue;
    }
    at.length = 0;
    for (let i = 0; i < n; i++) { // edge i runs from vertex i - 1 to vertex i
      const j = i === 0 ? n - 1 : i - 1;
      if ((yp[i] > y) !== (yp[j] > y)) at.push(xp[i] + (xp[j] - xp[i]) * (y - yp[i]) / (yp[j] - yp[i]));
    }
    at.sort((a, b) => a - b);
    for (let k = 0; k + 1 < at.length; k += 2) {
      const a = Math.min(Math.max(Math.ceil(at[k]), x0), x1), b = Math.min(Math.max(Math.ceil(at[k + 1]), x0), x1);
      inside.fill(1, row + a - x0, row + b - x0);
    }
    for (const c of at) { // pixels on or next to an edge, as the exact test decides them
      const px = Math.round(c);
      if (Math.abs(c - px) < NEAR && px >= x0 && px < x1) inside[row + px - x0] = inPolygon(px, y, xp, yp) ? 1 : 0;
    }
  }
  return { x0, y0, w, h, inside };
}

function lineCells(r0, c0, r1, c1, visit) {
  // visit(r, c) for each pixel of the line from (r0, c0) to (r1, c1) as skimage.draw.line draws it (Bresenham).
  const steep = Math.abs(r1 - r0) > Math.abs(c1 - c0);
  let r = steep ? c0 : r0, c = steep ? r0 : c0;
  const [dr, dc] = steep ? [Math.abs(c1 - c0), Math.abs(r1 - r0)] : [Math.abs(r1 - r0), Math.abs(c1 - c0)];
  const sr = (steep ? c1 - c0 : r1 - r0) > 0 ? 1 : -1, sc = (steep ? r1 - r0 : c1 - c0) > 0 ? 1 : -1;
  let d = 2 * dr - dc;
  for (let i = 0; i < dc; i++) {
    if (steep) visit(c, r); else visit(r, c);
    while (d >= 0) { r += sr; d -= 2 * dc; }
    c += sc;
    d += 2 * dr;
  }
  visit(r1, c1);
}

class Change {
  // What an edit drawn ahead of the server changed, to take it back: label pixels (flat index at, old id; n of them),
  // class table entries (id, old class; the table's old length), boxes (id, old box), the masks it deleted, and the
  // box it touched [x0, y0, x1, y1].
  constructor(classLength) {
    this.at = new Int32Array(256);
    this.old = new Uint32Array(256);
    this.n = 0;
    this.cls = [];
    this.clsOld = [];
    this.clsLength = classLength;
    this.boxIds = [];
    this.boxOld = [];
    this.gone = [];
    this.box = null;
  }

  reserve(more) {
    // Room for more pixels past the n recorded (the loops that change pixels write at, old and n themselves).
    if (this.n + more <= this.at.length) return;
    const size = Math.max(2 * this.at.length, this.n + more), at = new Int32Array(size), old = new Uint32Array(size);
    at.set(this.at.subarray(0, this.n));
    old.set(this.old.subarray(0, this.n));
    this.at = at;
    this.old = old;
  }

  get empty() {
    return this.n === 0 && this.cls.length === 0;
  }
}

function union(a, b) {
  // The box [x0, y0, x1, y1] holding boxes a and b (either may be null).
  if (!a) return b;
  if (!b) return a;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

function patchIds(patch) {
  // A patch's box of ids, row after row: its base64 data, or its runs along the box's rows spelled out.
  if (patch.data) return new Uint32Array(b64ToBytes(patch.data).buffer);
  const ids = new Uint32Array(patch.w * patch.h);
  let at = 0;
  patch.runIds.forEach((id, k) => { ids.fill(id, at, at + patch.runLengths[k]); at += patch.runLengths[k]; });
  return ids;
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
    this.pending = null; // performance.now() of the last finished action the page does not draw itself
    this.boxes = new Int32Array(0); // [y0, y1, x0, x1] per mask id, holding all its pixels (y1 <= y0: none)
    this.editSeq = 0; // the number of the last edit drawn here ahead of the server
    this.unconfirmed = []; // those not settled by the server yet: {seq, op, change, t} (see optimistic)
    this.resyncing = null; // while the labels are fetched again: the patches that came meanwhile
    this.cursor = null;
    this.pluginLayers = []; // measurement plugins' overlay layers, image coordinates (see setPluginLayers)
    window.mcpLatency = window.mcpLatency || []; // ms from an edit's input to its server's patch applied
    window.mcpDrawn = window.mcpDrawn || []; // ms from an edit's input to the page's own result drawn
    window.mcpCorrected = window.mcpCorrected || 0; // patches that changed what the page had drawn
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
    async load(pixelsUrl, labelsUrl, boxesUrl, classes, colors, keepView, pixels) {
      // pixels: {width, height, channels, dtype: uint8|uint16|float32, display: {rgb, low, high},
      //          levels: [[h, w], ...] full resolution first, level: the one pixelsUrl sends, tile, tileUrl}.
      // A large image comes as a coarser level (the overview); tiles of finer levels are fetched where zoomed in.
      const levels = pixels.levels || [[pixels.height, pixels.width]], level = pixels.level || 0;
      const [rawH, rawW] = levels[level];
      const t0 = performance.now();
      const [raw, { ids: buf }, boxes] = await Promise.all([this.fetchPixels(pixelsUrl, pixels, rawW * rawH),
                                                            this.fetchLabels(labelsUrl, pixels.width * pixels.height),
                                                            this.fetchBoxes(boxesUrl)]);
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
      this.boxes = boxes;
      this.unconfirmed = [];
      this.resyncing = null;
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
      if (!this.warmed) setTimeout(() => this.warmUp(), 0);
      this.warmed = true;
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
      // along the box's rows, or cleared: ids whose pixels in the box became background; classes?: the class of
      // every id, or classAt, classTo, classCount: the entries that changed and the table's length; colors?: [...];
      // ms?: the server's time on the edit; edits: the server's edit count after it; seq?: the number of the edit
      // the page drew itself that this settles; refused?: that edit changed nothing on the server}
      const t0 = performance.now();
      if (this.resyncing) { this.resyncing.push(patch); return true; }
      const k = patch.seq === undefined ? -1 : this.unconfirmed.findIndex((u) => u.seq === patch.seq);
      const mine = k >= 0 ? this.unconfirmed[k] : null;
      if (patch.refused && !mine) return true;
      if (mine && this.unconfirmed.length === 1 && this.agrees(patch, mine.change)) {
        this.unconfirmed = []; // the page shows the server's result already
      } else {
        const [box, full] = this.settle(patch, k);
        if (box) this.renderBox(box[0] - 1, box[1] - 1, box[2] - box[0] + 2, box[3] - box[1] + 2);
        this.draw(box && !full ? [box[0] - 1, box[1] - 1, box[2] - box[0] + 2, box[3] - box[1] + 2] : null);
        if (mine) window.mcpCorrected++;
      }
      const started = mine ? mine.t : this.pending;
      if (started !== null) {
        const now = performance.now();
        window.mcpLatency.push(now - started);
        // where the time went: the server's edit, the round trip to the server besides it (transfers, queues),
        // this drawing
        (window.mcpPhases = window.mcpPhases || []).push({ server: patch.ms || 0, trip: t0 - started - (patch.ms || 0),
                                                           page: now - t0 });
        if (!mine) this.pending = null;
      }
      return true;
    },
    settle(patch, k) {
      // Take back every edit drawn ahead of the server, apply its patch (which settles edit k of them, if any), and
      // make again the edits after k (their patches are still to come). Returns [the box that changed, whether every
      // colour may have].
      let box = null;
      for (let i = this.unconfirmed.length - 1; i >= 0; i--) {
        box = union(box, this.undoChange(this.unconfirmed[i].change));
      }
      const later = this.unconfirmed.slice(k + 1);
      this.unconfirmed = [];
      box = union(box, this.writePatch(patch, true));
      for (const u of later) {
        u.change = u.op();
        box = union(box, u.change.box);
      }
      this.unconfirmed = later;
      return [box, !!patch.colors];
    },
    agrees(patch, change) {
      // Whether the labels and class table hold the server's result of the one edit drawn ahead of it already.
      if (patch.refused) return change.empty;
      if (patch.colors || patch.classes) return false;
      if ((patch.classCount ?? this.classes.length) !== this.classes.length) return false;
      const listed = new Set(patch.classAt || []);
      if (change.cls.some((id) => !listed.has(id))) return false;
      if ((patch.classAt || []).some((id, i) => this.classes[id] !== patch.classTo[i])) return false;
      const W = this.W, L = this.labels, x0 = patch.x, y0 = patch.y, x1 = x0 + patch.w, y1 = y0 + patch.h;
      for (const i of change.at.subarray(0, change.n)) {
        const x = i % W, y = (i - x) / W;
        if (x < x0 || x >= x1 || y < y0 || y >= y1) return false;
      }
      if (patch.cleared) {
        const gone = new Set(change.gone);
        return patch.cleared.length === gone.size && patch.cleared.every((id) => gone.has(id));
      }
      if (!patch.data && !patch.runIds) return change.n === 0;
      const ids = patchIds(patch);
      for (let y = y0, n = 0; y < y1; y++) {
        for (let i = y * W + x0, end = i + patch.w; i < end; i++, n++) if (L[i] !== ids[n]) return false;
      }
      return true;
    },
    writePatch(patch, labels) {
      // Apply the patch's class table and colours, and, when labels, its ids (keeping the boxes holding every
      // mask); returns its box [x0, y0, x1, y1] (null when it has none).
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
      this.widenIds(this.classes.length);
      for (const id of [...this.selection]) if (id >= this.classes.length) this.selection.delete(id);
      if (!(patch.w > 0 && patch.h > 0) || !labels) return null;
      const W = this.W, L = this.labels, x0 = patch.x, y0 = patch.y, x1 = x0 + patch.w, y1 = y0 + patch.h;
      if (patch.data || patch.runIds) {
        const ids = patchIds(patch);
        for (let r = 0; r < patch.h; r++) L.set(ids.subarray(r * patch.w, (r + 1) * patch.w), (y0 + r) * W + x0);
      } else if (patch.cleared) {
        let top = this.classes.length;
        for (const id of patch.cleared) top = Math.max(top, id + 1);
        const gone = new Uint8Array(top); // a lookup per pixel, not a Set's hashing
        for (const id of patch.cleared) gone[id] = 1;
        for (let y = y0; y < y1; y++) {
          for (let i = y * W + x0, end = i + patch.w; i < end; i++) if (gone[L[i]]) L[i] = 0;
        }
        for (const id of patch.cleared) if (4 * id < this.boxes.length) this.boxes.fill(0, 4 * id, 4 * id + 4);
        return [x0, y0, x1, y1];
      }
      this.growBoxes(x0, y0, x1, y1);
      return [x0, y0, x1, y1];
    },
    widenIds(n) {
      // 16-bit ids until the class table (one entry per id, n) outgrows them: widened once, before new ids land.
      if (this.labels.BYTES_PER_ELEMENT === 2 && n > 65536) this.labels = Uint32Array.from(this.labels);
      if (this.boxes.length < 4 * n) {
        const boxes = new Int32Array(Math.max(4 * n, 2 * this.boxes.length));
        boxes.set(this.boxes);
        this.boxes = boxes;
      }
    },
    growBoxes(x0, y0, x1, y1) {
      // Grow each mask's box to hold its pixels in [x0, x1) x [y0, y1).
      const W = this.W, L = this.labels;
      this.widenIds(this.classes.length);
      const B = this.boxes;
      for (let y = y0; y < y1; y++) {
        for (let x = x0, i = y * W + x0; x < x1; x++, i++) {
          const id = L[i];
          if (id === 0) continue;
          if (4 * id >= B.length) { this.widenIds(id + 1); return this.growBoxes(x0, y0, x1, y1); }
          const b = 4 * id;
          if (B[b + 1] <= B[b]) { B[b] = y; B[b + 1] = y + 1; B[b + 2] = x; B[b + 3] = x + 1; continue; }
          if (y < B[b]) B[b] = y;
          if (y >= B[b + 1]) B[b + 1] = y + 1;
          if (x < B[b + 2]) B[b + 2] = x;
          if (x >= B[b + 3]) B[b + 3] = x + 1;
        }
      }
    },
    async resync(labelsUrl, classes, colors) {
      // Fetch the labels again and take the class table (an edit drawn here failed on the server): what was drawn
      // ahead of the server is taken back; patches that come meanwhile wait, and apply after to the class table, and
      // to the labels when they are newer than the labels fetched (by the server's edit count).
      for (let i = this.unconfirmed.length - 1; i >= 0; i--) this.undoChange(this.unconfirmed[i].change);
      this.unconfirmed = [];
      this.resyncing = [];
      let fetched = null;
      try {
        this.setClassTable(classes, colors, false);
        fetched = await this.fetchLabels(labelsUrl, this.W * this.H);
      } finally {
        const waiting = this.resyncing;
        this.resyncing = null;
        if (fetched) {
          this.labels = fetched.ids;
          this.boxes = new Int32Array(4 * this.classes.length);
        }
        for (const patch of waiting) this.writePatch(patch, !fetched || patch.edits > fetched.edits);
        if (fetched) this.growBoxes(0, 0, this.W, this.H);
        this.renderBox(0, 0, this.W, this.H);
        this.draw();
      }
      return true;
    },
    setSelection(ids) {
      this.selection = new Set(ids);
      this.renderBox(0, 0, this.W, this.H);
      this.draw();
    },
    highlight(id) {
      // Centre the view on a mask (the mean of its pixels, found in its box) and select it.
      const box = this.boxOf(id), L = this.labels, W = this.W;
      let sx = 0, sy = 0, n = 0;
      for (let y = box ? box[1] : 0; box && y < box[3]; y++) {
        for (let x = box[0], i = y * W + x; x < box[2]; x++, i++) if (L[i] === id) { sx += x; sy += y; n++; }
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
      // {ids, edits}: n ids, 16-bit when they come as 2 bytes each (every id below 65536), else 32-bit (a view, not a
      // copy), and the server's edit count when it sent them.
      const resp = await fetch(url);
      if (!resp.ok) throw new Error("labels failed to load: " + resp.status);
      const buf = await resp.arrayBuffer();
      return { ids: buf.byteLength === 2 * n ? new Uint16Array(buf) : new Uint32Array(buf),
               edits: Number(resp.headers.get("X-Edits")) };
    },
    async fetchBoxes(url) {
      // Each mask id's box, [y0, y1, x0, x1] (uint32 little-endian on the wire).
      const resp = await fetch(url);
      if (!resp.ok) throw new Error("boxes failed to load: " + resp.status);
      return new Int32Array(await resp.arrayBuffer());
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
        if (ctrl) this.optimistic("delete", { ids: [id] }, () => this.deleteIds([id]));
        else if (shift) {
          const ids = this.selection.has(id) ? [...this.selection] : [id], cls = this.currentClass;
          this.optimistic("assign", { ids, class_id: cls }, () => this.assignIds(ids, cls));
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
        this.optimistic("lasso", { points: path }, () => this.lassoIds(path), path);
        return;
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
      if (path && path.length > 2) {
        const cls = this.currentClass;
        this.optimistic("polygon", { points: path, class_id: cls }, () => this.addPolygon(path, cls), path);
        return;
      }
      this.draw();
    },
    // ------------------------------------------------- edits drawn ahead of the server
    optimistic(kind, args, op, stroke = null) {
      // Send an edit, then draw its result now: op() makes the change to the labels the server will make and
      // returns it (a Change); it runs again should a patch of an earlier edit change what it starts from.
      // The server's patch or refusal settles it (applyPatch). stroke: the points of the line drawn for the edit,
      // to clear from the view.
      const t = performance.now();
      if (this.resyncing) { this.pending = t; this.$emit(kind, args); this.draw(); return; }
      const seq = ++this.editSeq;
      this.$emit(kind, { ...args, seq }); // first: the server works while the page draws
      const t0 = performance.now(), change = op(), t1 = performance.now();
      this.unconfirmed.push({ seq, op, change, t });
      const b = change.box, m = (CLOSE_PX + 3) / this.scale; // the stroke's width and a contour's closing circle
      if (b) this.renderBox(b[0] - 1, b[1] - 1, b[2] - b[0] + 2, b[3] - b[1] + 2);
      const t2 = performance.now();
      let shown = b && [b[0] - 1, b[1] - 1, b[2] + 1, b[3] + 1];
      if (stroke) {
        const xs = stroke.map((p) => p[0]), ys = stroke.map((p) => p[1]);
        shown = union(shown, [Math.min(...xs) - m, Math.min(...ys) - m, Math.max(...xs) + m, Math.max(...ys) + m]);
      }
      if (shown) this.draw([shown[0], shown[1], shown[2] - shown[0], shown[3] - shown[1]]);
      const t3 = performance.now();
      window.mcpDrawn.push(t3 - t);
      // where the page's time went: sending the edit, the edit, the overlay's pixels, the view
      (window.mcpDrawnPhases = window.mcpDrawnPhases || []).push({ send: t0 - t, edit: t1 - t0, overlay: t2 - t1,
                                                                   view: t3 - t2 });
    },
    warmUp() {
      // Make each kind of edit drawn here a few times on a small scratch image swapped in for a moment (a step per
      // task), so that the first real ones run compiled: the first lassos of a page ran 3-5x slower than later ones.
      const W = 256, labels = new this.labels.constructor(W * W), n = (W / 16) ** 2;
      for (let i = 0; i < W * W; i++) {
        const x = i % W, y = (i - x) / W;
        if (x % 16 > 2 && y % 16 > 2) labels[i] = (y >> 4) * 16 + (x >> 4) + 1; // 13 x 13 squares
      }
      const scratch = { W, H: W, labels, classes: new Uint32Array(n + 1).fill(1), boxes: new Int32Array(4 * (n + 1)) };
      const swap = () => {
        for (const key of Object.keys(scratch)) [scratch[key], this[key]] = [this[key], scratch[key]];
      };
      const circle = (cx, cy, r) => Array.from({ length: 40 }, (_, k) => [cx + r * Math.cos(k / 6.3),
                                                                          cy + r * Math.sin(k / 6.3)]);
      const steps = [() => this.growBoxes(0, 0, W, W)];
      for (let k = 0; k < 5; k++) {
        steps.push(() => this.undoChange(this.lassoIds(circle(128.3, 127.6, 90))));
        steps.push(() => this.undoChange(this.addPolygon(circle(127.4, 128.2, 100), 1)));
      }
      const next = () => {
        if (!steps.length) return;
        swap();
        try {
          steps.shift()();
        } finally {
          swap();
        }
        setTimeout(next, 0);
      };
      next();
    },
    newChange() {
      return new Change(this.classes.length);
    },
    setClass(change, id, cls) {
      if (this.classes[id] === cls) return;
      change.cls.push(id);
      change.clsOld.push(this.classes[id]);
      this.classes[id] = cls;
    },
    setBox(change, id, box) {
      change.boxIds.push(id);
      change.boxOld.push(this.boxes.slice(4 * id, 4 * id + 4));
      this.boxes.set(box, 4 * id);
    },
    undoChange(change) {
      // Take back a change (the last one made); returns the box it touched.
      const L = this.labels, at = change.at, old = change.old;
      for (let k = change.n - 1; k >= 0; k--) L[at[k]] = old[k];
      for (let k = change.cls.length - 1; k >= 0; k--) this.classes[change.cls[k]] = change.clsOld[k];
      if (this.classes.length !== change.clsLength) this.classes = this.classes.slice(0, change.clsLength);
      for (let k = change.boxIds.length - 1; k >= 0; k--) this.boxes.set(change.boxOld[k], 4 * change.boxIds[k]);
      return change.box;
    },
    boxOf(id) {
      // [x0, y0, x1, y1] holding every pixel of mask id, or null when it has none.
      const B = this.boxes, b = 4 * id;
      return id > 0 && b < B.length && B[b + 1] > B[b] ? [B[b + 2], B[b], B[b + 3], B[b + 1]] : null;
    },
    validIds(ids) {
      // The distinct ids of the class table's range (the server's LabelSet._valid_ids).
      return [...new Set(ids)].filter((id) => id > 0 && id < this.classes.length);
    },
    deleteIds(ids) {
      // Clear masks ids (Editor.delete): their pixels become background and their class 0.
      const change = this.newChange(), L = this.labels, W = this.W, valid = this.validIds(ids);
      for (const id of valid) {
        const box = this.boxOf(id);
        if (!box) continue;
        change.reserve((box[2] - box[0]) * (box[3] - box[1]));
        const at = change.at, old = change.old, first = change.n;
        let n = first;
        for (let y = box[1]; y < box[3]; y++) {
          for (let i = y * W + box[0], end = y * W + box[2]; i < end; i++) {
            if (L[i] === id) { at[n] = i; old[n++] = id; L[i] = 0; }
          }
        }
        change.n = n;
        if (n > first) change.gone.push(id);
        this.setBox(change, id, [0, 0, 0, 0]);
        change.box = union(change.box, box);
      }
      if (change.n) for (const id of valid) this.setClass(change, id, 0);
      return change;
    },
    assignIds(ids, cls) {
      // Give masks ids class cls (Editor.assign: nothing when none of them has pixels).
      const change = this.newChange(), valid = this.validIds(ids);
      for (const id of valid) change.box = union(change.box, this.boxOf(id));
      if (change.box) for (const id of valid) this.setClass(change, id, cls);
      return change;
    },
    lassoIds(points) {
      // Delete every mask with at least half of its pixels inside the lasso (Editor.lasso: the pixels inside as a
      // contour fills them; each mask's pixels counted in its box).
      const fill = fillPolygon(points.map((p) => p[0]), points.map((p) => p[1]), this.W, this.H);
      if (!fill) return this.newChange();
      const L = this.labels, W = this.W, In = fill.inside, inside = new Uint32Array(this.classes.length), seen = [];
      for (let r = 0; r < fill.h; r++) {
        for (let c = 0, i = (fill.y0 + r) * W + fill.x0, k = r * fill.w; c < fill.w; c++, i++, k++) {
          const id = L[i];
          if (In[k] && id && inside[id]++ === 0) seen.push(id);
        }
      }
      const chosen = seen.filter((id) => {
        const box = this.boxOf(id) || [0, 0, 0, 0]; // none: the boxes are wrong, the server's patch will tell
        let area = 0;
        for (let y = box[1]; y < box[3]; y++) {
          for (let i = y * W + box[0], end = y * W + box[2]; i < end; i++) if (L[i] === id) area++;
        }
        return inside[id] / Math.max(area, 1) >= 0.5;
      });
      return this.deleteIds(chosen);
    },
    addPolygon(points, cls) {
      // A new mask of class cls on the free pixels inside the contour or on its edges (LabelSet.add_polygon): id
      // one past the class table; nothing when no pixel is free.
      const W = this.W, H = this.H, xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
      const change = this.newChange(), id = this.classes.length, fill = fillPolygon(xs, ys, W, H);
      this.widenIds(id + 1);
      const L = this.labels, edges = [];
      for (let k = 0; k < points.length; k++) {
        const a = points[k], b = points[(k + 1) % points.length];
        lineCells(roundHalfEven(a[1]), roundHalfEven(a[0]), roundHalfEven(b[1]), roundHalfEven(b[0]), (y, x) => {
          if (y >= 0 && y < H && x >= 0 && x < W) edges.push(y * W + x);
        });
      }
      change.reserve(edges.length + (fill ? fill.w * fill.h : 0));
      const at = change.at, old = change.old;
      let n = 0, x0 = W, y0 = H, x1 = 0, y1 = 0; // the box of the pixels taken
      for (let r = 0; fill && r < fill.h; r++) {
        const y = fill.y0 + r, first = n;
        for (let c = 0, i = y * W + fill.x0, k = r * fill.w; c < fill.w; c++, i++, k++) {
          if (fill.inside[k] && L[i] === 0) { L[i] = id; at[n] = i; old[n++] = 0; }
        }
        if (n === first) continue;
        y0 = Math.min(y0, y);
        y1 = y + 1;
        x0 = Math.min(x0, at[first] - y * W);
        x1 = Math.max(x1, at[n - 1] - y * W + 1);
      }
      for (const i of edges) {
        if (L[i] !== 0) continue;
        L[i] = id;
        at[n] = i;
        old[n++] = 0;
        const x = i % W, y = (i - x) / W;
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x + 1);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y + 1);
      }
      change.n = n;
      if (!change.n) return change;
      const table = new Uint32Array(id + 1);
      table.set(this.classes);
      this.classes = table;
      this.setClass(change, id, cls);
      this.setBox(change, id, [y0, y1, x0, x1]);
      change.box = [x0, y0, x1, y1];
      return change;
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
