// The demo's form checks: the server's name limits (1–64 code points, trimmed) and session ids.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkName, checkSession, initial } from '../../src/collective_sync/web/demo/forms.js';

test('names are trimmed, must not be blank, and count characters as the server does', () => {
  assert.deepEqual(checkName('  Ana  '), { name: 'Ana' });
  assert.match(checkName('   ').error, /Enter a name/);
  assert.match(checkName('').error, /Enter a name/);
  assert.match(checkName(null).error, /Enter a name/);
  assert.deepEqual(checkName('a'.repeat(64)), { name: 'a'.repeat(64) });
  assert.match(checkName('a'.repeat(65)).error, /65 characters long; use at most 64/);
  // 64 emoji are 128 UTF-16 units but 64 code points: the server takes them.
  assert.deepEqual(checkName('🌅'.repeat(64)), { name: '🌅'.repeat(64) });
  assert.ok(checkName('🌅'.repeat(65)).error);
});

test('a session is an id or a link carrying one (and maybe an invite)', () => {
  assert.deepEqual(checkSession(' ZZXIyyp8 '), { sid: 'ZZXIyyp8', invite: null });
  assert.deepEqual(checkSession('http://127.0.0.1:8765/?s=abc_-9&invite=tok'), { sid: 'abc_-9', invite: 'tok' });
  for (const bad of ['', 'ab', '<b>x</b>', 'a b', 'x'.repeat(65), 'http://127.0.0.1/?x=1', 'http://127.0.0.1/?s=<i>']) {
    assert.match(checkSession(bad).error, /not a session id or invite link/, bad);
  }
});

test('an avatar is the first whole character, never half a surrogate pair', () => {
  assert.equal(initial('ana'), 'A');
  assert.equal(initial('  ben'), 'B');
  assert.equal(initial('👋🏽 Wave'), '👋🏽');
  assert.equal(initial('👨‍👩‍👧 family'), '👨‍👩‍👧');
  assert.equal(initial('e\u0301mile'), 'E\u0301');
  assert.equal(initial(''), '?');
});
