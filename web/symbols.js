// Tactical symbols for units, in the spirit of the German DV 102
// ("Taktische Zeichen"): the shape says what a unit is (vehicle, boat,
// aircraft, command, team), the fill colour who it belongs to (fire brigade
// red, THW blue, police green, aid organisations white, command yellow),
// the glyph inside its type (HLF, RTW, …) and the box at its side its radio
// status digit. A silent unit (in a status that expects reports, but quiet
// for too long) carries a red "!" badge; stale and lost ones are drawn
// faded and dashed, lost ones crossed out in grey.
//
// Symbols are drawn on a canvas once per distinct look and handed to
// MapLibre as images (`map.addImage`), so a symbol layer of thousands of
// units costs one texture atlas, not thousands of DOM nodes. The image id
// spells out everything that decides the look:
//
//   unit:<org>:<shape>:<glyph>:<status>:<freshness>[+silent][+conflict]
//
// e.g. `unit:fire:vehicle:HLF:3:fresh`, `unit:aid:vehicle:RTW:7:stale+silent`.

/** Organisation class of an organisation name. */
export function orgClass(org) {
  const o = String(org || '').toLowerCase();
  if (/fire|feuerwehr|^fw$|^bf$|^ff$/.test(o)) return 'fire';
  if (o.includes('thw')) return 'thw';
  if (/police|polizei/.test(o)) return 'police';
  // Rescue service and the aid organisations (incl. water rescue) share white.
  if (/rescue|ambulance|aid|ems|medic|rettung|drk|asb|juh|mhd|samarit|dlrg|wasserwacht/.test(o)) {
    return 'aid';
  }
  if (/command|lead|staff|stab|führung|fuehrung/.test(o)) return 'command';
  return 'other';
}

/** Fill and line colours per organisation class. */
export const ORG_COLORS = {
  fire: { fill: '#d42a1f', line: '#ffffff' },
  thw: { fill: '#1d4fb3', line: '#ffffff' },
  police: { fill: '#1f8a3b', line: '#ffffff' },
  aid: { fill: '#f7f7f2', line: '#111111' },
  command: { fill: '#f3c316', line: '#111111' },
  other: { fill: '#6b7787', line: '#ffffff' },
};

// What the unit type says about the shape (matched on the type's name).
const SHAPE_RULES = [
  ['aircraft', /^(rth|ith|sar|heli|hubschrauber|christoph|polizeihubschrauber|libelle)/i],
  ['boat', /(boot|boat|^mrb|^mzb|^rtb|^flb|^lb\b|^feuerlöschboot|^fl[bö])/i],
  ['command', /^(elw|kdow|füKw|fukw|fuekw|elf|leitung|lna|orgl|el\b|lfü|führ|fuehr|cmd)/i],
  ['team', /^(zug|gruppe|staffel|trupp|team|seg|bereitschaft|crew|einheit|squad)/i],
];

/** Shape class of a unit: vehicle, boat, aircraft, command or team. */
export function shapeClass(type, org) {
  const t = String(type || '').trim();
  for (const [shape, re] of SHAPE_RULES) if (re.test(t)) return shape;
  if (orgClass(org) === 'command') return 'command';
  return t ? 'vehicle' : 'team';
}

/** The glyph drawn inside: the type's name, short and safe for an image id. */
export function glyphOf(type) {
  const t = String(type || '')
    .replace(/[^A-Za-z0-9ÄÖÜäöüß/-]+/g, '')
    .slice(0, 8);
  return t || '?';
}

/** Colour of the status box by status class. */
const STATUS_COLORS = {
  available: '#1f9d55',
  on_mission: '#e08a00',
  unavailable: '#5a6270',
  unknown: '#2b3038',
};

/** The image id of a unit's symbol (see the top of this file). */
export function unitSymbolId(u) {
  const status = Number.isInteger(u.status) && u.status >= 0 && u.status <= 9 ? u.status : '-';
  let look = ['fresh', 'aging', 'stale', 'lost'].includes(u.freshness) ? u.freshness : 'fresh';
  if (u.silent) look += '+silent';
  if (u.conflict) look += '+conflict';
  const cls = STATUS_COLORS[u.status_class] ? u.status_class : 'unknown';
  return [
    'unit',
    orgClass(u.org),
    shapeClass(u.type, u.org),
    glyphOf(u.type),
    status,
    look,
    cls,
  ].join(':');
}

/** The parts of a symbol id, or null when it is not one. */
export function parseUnitSymbolId(id) {
  const p = String(id).split(':');
  if (p.length !== 7 || p[0] !== 'unit') return null;
  const [, org, shape, glyph, status, look, statusClass] = p;
  const flags = look.split('+');
  return {
    org,
    shape,
    glyph,
    status,
    freshness: flags[0],
    silent: flags.includes('silent'),
    conflict: flags.includes('conflict'),
    statusClass,
  };
}

// Geometry of a symbol in CSS pixels (the canvas is `ratio` times larger).
export const SYMBOL_W = 74;
export const SYMBOL_H = 48;
const FRAME = { x: 6, y: 12, w: 46, h: 24 };
const BOX = { x: 52, y: 12, w: 18, h: 24 };

function frameOutline(ctx, shape) {
  const { x, y, w, h } = FRAME;
  ctx.beginPath();
  if (shape === 'boat') {
    // A hull: flat deck, rounded bottom.
    ctx.moveTo(x, y);
    ctx.lineTo(x + w, y);
    ctx.lineTo(x + w, y + h * 0.55);
    ctx.quadraticCurveTo(x + w, y + h, x + w / 2, y + h);
    ctx.quadraticCurveTo(x, y + h, x, y + h * 0.55);
    ctx.closePath();
  } else if (shape === 'aircraft') {
    // A rounded body (a rotorcraft's cabin); the rotor is drawn above.
    const r = h / 2;
    ctx.moveTo(x + r, y);
    ctx.lineTo(x + w - r, y);
    ctx.arc(x + w - r, y + r, r, -Math.PI / 2, Math.PI / 2);
    ctx.lineTo(x + r, y + h);
    ctx.arc(x + r, y + r, r, Math.PI / 2, (3 * Math.PI) / 2);
    ctx.closePath();
  } else {
    ctx.rect(x, y, w, h);
  }
}

function drawExtras(ctx, shape, line) {
  const { x, y, w, h } = FRAME;
  ctx.strokeStyle = line;
  ctx.fillStyle = line;
  ctx.lineWidth = 2;
  if (shape === 'vehicle' || shape === 'command') {
    // Two wheels under the frame: a road vehicle.
    for (const cx of [x + w * 0.25, x + w * 0.75]) {
      ctx.beginPath();
      ctx.arc(cx, y + h + 5, 3.5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    }
  }
  if (shape === 'command') {
    // A pennant on a pole at the frame's left: leadership.
    ctx.beginPath();
    ctx.moveTo(x + 1, y);
    ctx.lineTo(x + 1, y - 11);
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x + 1, y - 11);
    ctx.lineTo(x + 17, y - 7.5);
    ctx.lineTo(x + 1, y - 4);
    ctx.closePath();
    ctx.fill();
  }
  if (shape === 'aircraft') {
    // The rotor.
    ctx.beginPath();
    ctx.moveTo(x + w / 2, y);
    ctx.lineTo(x + w / 2, y - 6);
    ctx.moveTo(x + 4, y - 6);
    ctx.lineTo(x + w - 4, y - 6);
    ctx.stroke();
  }
  if (shape === 'team') {
    // Size marks above the frame: a formation, not a vehicle.
    for (const dx of [-5, 0, 5]) {
      ctx.beginPath();
      ctx.arc(x + w / 2 + dx, y - 4, 1.8, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

/** Shrinks the font until `text` fits `width`. */
function fitFont(ctx, text, width, start) {
  let size = start;
  for (; size > 7; size -= 1) {
    ctx.font = `bold ${size}px "DejaVu Sans", "Liberation Sans", Arial, sans-serif`;
    if (ctx.measureText(text).width <= width) break;
  }
  return size;
}

/**
 * Draws the symbol `id` names and returns its pixels for `map.addImage`
 * (`{ width, height, data }`, `ratio` device pixels per CSS pixel), or null
 * when `id` is not a unit symbol id.
 */
export function drawUnitSymbol(id, ratio = 2) {
  const s = parseUnitSymbolId(id);
  if (!s) return null;
  const canvas = document.createElement('canvas');
  canvas.width = Math.round(SYMBOL_W * ratio);
  canvas.height = Math.round(SYMBOL_H * ratio);
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  const lost = s.freshness === 'lost';
  const faded = lost || s.freshness === 'stale';
  const colors = lost ? { fill: '#8a8f96', line: '#222222' } : ORG_COLORS[s.org] || ORG_COLORS.other;
  ctx.globalAlpha = faded ? 0.6 : 1;

  // A dark halo keeps white and yellow symbols readable on any base map.
  // (Faded symbols go without: the shadow would show through.)
  ctx.save();
  if (!faded) {
    ctx.shadowColor = 'rgba(0, 0, 0, 0.75)';
    ctx.shadowBlur = 3;
  }
  frameOutline(ctx, s.shape);
  ctx.fillStyle = colors.fill;
  ctx.fill();
  ctx.restore();

  frameOutline(ctx, s.shape);
  ctx.lineWidth = 2;
  ctx.strokeStyle = colors.line;
  if (faded) ctx.setLineDash([4, 3]);
  ctx.stroke();
  ctx.setLineDash([]);
  drawExtras(ctx, s.shape, colors.line);

  // The type glyph.
  ctx.fillStyle = colors.line;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  fitFont(ctx, s.glyph, FRAME.w - 6, 15);
  ctx.fillText(s.glyph, FRAME.x + FRAME.w / 2, FRAME.y + FRAME.h / 2 + 1);

  // The radio status in its box.
  ctx.fillStyle = STATUS_COLORS[s.statusClass] || STATUS_COLORS.unknown;
  ctx.fillRect(BOX.x, BOX.y, BOX.w, BOX.h);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = '#000000';
  ctx.strokeRect(BOX.x, BOX.y, BOX.w, BOX.h);
  ctx.fillStyle = '#ffffff';
  fitFont(ctx, s.status, BOX.w - 2, 17);
  ctx.fillText(s.status, BOX.x + BOX.w / 2, BOX.y + BOX.h / 2 + 1);

  ctx.globalAlpha = 1;
  if (lost) {
    ctx.strokeStyle = '#e5483b';
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    ctx.moveTo(FRAME.x - 2, FRAME.y + FRAME.h + 2);
    ctx.lineTo(BOX.x + BOX.w, FRAME.y - 2);
    ctx.stroke();
  }
  if (s.conflict) {
    ctx.strokeStyle = '#ff2d95';
    ctx.lineWidth = 2;
    ctx.setLineDash([3, 2]);
    ctx.strokeRect(1.5, 7, SYMBOL_W - 3, SYMBOL_H - 9);
    ctx.setLineDash([]);
  }
  if (s.silent) {
    // A red warning badge at the top right: this unit went quiet.
    const cx = SYMBOL_W - 8;
    const cy = 8;
    ctx.fillStyle = '#e5102a';
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(cx, cy, 7, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = '#ffffff';
    fitFont(ctx, '!', 12, 12);
    ctx.fillText('!', cx, cy + 1);
  }
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  return { width: img.width, height: img.height, data: img.data };
}

/** The organisation's fill colour as [r, g, b] (for tests of drawn symbols). */
export function orgRgb(org) {
  const hex = (ORG_COLORS[org] || ORG_COLORS.other).fill;
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

/** Where the frame's fill can be sampled, in CSS pixels (left of the glyph). */
export const FILL_SAMPLE = { x: FRAME.x + 4, y: FRAME.y + 4 };
