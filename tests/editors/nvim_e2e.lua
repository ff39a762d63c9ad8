-- Headless Neovim (0.11+) with the configuration from docs/editors.md, as a user would drive it with the documented
-- keys: diagnostics on a suite -> Markdown, YAML and Copilot prompt files get no lse-server, a .suite.json joins the
-- workspace's one server -> `gra`: Evaluate on a buffer with an unsaved edit -> `grx` on the lens line: Evolve,
-- the progress lens in step with the progress -> "Show diff", then "Apply" in the server's question -> one undo
-- restores the buffer -> Evolve again, `grx` on the progress lens cancels it -> Show tree -> :LseTrust asks again.
-- Environment: LSE_CONFIG (the docs' Lua block as a file), LSE_ROOT (the workspace), LSE_PROMPT, LSE_SUITE (a suite
-- with a duplicate id), LSE_JSON, LSE_README, LSE_YAML, LSE_COPILOT (files in the workspace that are not LSE's).
local function out(s) io.stdout:write(s .. '\n') end
local function fail(what, code)
  out('FAIL ' .. what)
  vim.cmd('cquit ' .. (code or 1))
end
local function wait(ms, what, cond)
  if not vim.wait(ms, cond, 50) then fail(what) end
end

-- what a user sees: messages (vim.notify) and the choices offered (vim.ui.select: the server's questions, code
-- actions, code lenses); `picks` answers each kind of choice in turn
local notes, questions, offered = {}, {}, {}
vim.notify = function(msg, level) table.insert(notes, msg) end
local echo = vim.api.nvim_echo
vim.api.nvim_echo = function(chunks, history, opts) -- window/showMessage arrives as "LSP[lse][Info] …"
  local text = ''
  for _, chunk in ipairs(chunks) do text = text .. chunk[1] end
  if history then table.insert(notes, (text:gsub('^LSP%[lse%]%[%a+%] ', ''):gsub('\n$', ''))) end
  return echo(chunks, history, opts)
end
local picks = { lsp_message = { 'Show diff', 'Apply' }, codeaction = {}, codelens = {} }
vim.ui.select = function(items, opts, on_choice)
  local kind = opts.kind or '?'
  local titles = {}
  for _, item in ipairs(items) do
    table.insert(titles, opts.format_item and opts.format_item(item) or item.title)
  end
  if kind == 'lsp_message' then -- the server's question (window/showMessageRequest)
    table.insert(questions, opts.prompt .. '[' .. table.concat(titles, '|') .. ']')
  else
    table.insert(offered, kind .. ' ' .. table.concat(titles, '|'))
  end
  local want = table.remove(picks[kind] or {}, 1)
  for i, title in ipairs(titles) do
    if want and title:find(want) then return on_choice(items[i], i) end
  end
  on_choice(nil)
end
local function note(pattern)
  for _, n in ipairs(notes) do
    if n:find(pattern) then return n end
  end
end
local function count_notes(pattern)
  local n = 0
  for _, text in ipairs(notes) do
    if text:find(pattern) then n = n + 1 end
  end
  return n
end

-- vim.secure asks whether to trust the workspace folder: "allow" (the 4th choice), and after :LseTrust "deny" (3rd)
local trust_asked, trust_answers = {}, { 4, 3 }
vim.fn.confirm = function(msg) table.insert(trust_asked, msg); return table.remove(trust_answers, 1) or 1 end
dofile(vim.env.LSE_CONFIG)

-- the progress as a user reads it: the latest $/progress message, and when it came
local progress = { count = 0, message = nil, at = 0, kind = nil }
vim.api.nvim_create_autocmd('LspProgress', {
  callback = function(ev)
    local value = ev.data.params.value
    progress.count = progress.count + 1
    progress.kind = value.kind
    progress.message, progress.at = value.message, vim.uv.hrtime() / 1e9
  end,
})

-- 1. diagnostics on a suite
vim.cmd.edit(vim.env.LSE_SUITE)
local suite_buf = vim.api.nvim_get_current_buf()
wait(30000, 'attach', function() return #vim.lsp.get_clients({ bufnr = 0, name = 'lse' }) > 0 end)
wait(30000, 'diagnostics', function() return #vim.diagnostic.get(suite_buf) > 0 end)
out('DIAG ' .. vim.diagnostic.get(suite_buf)[1].code)

-- 2. Markdown, YAML and a Copilot prompt file (no `suite:`) get no server; a .suite.json joins the one server
for _, file in ipairs({ vim.env.LSE_README, vim.env.LSE_YAML, vim.env.LSE_COPILOT }) do
  vim.cmd.edit(file)
  vim.wait(500)
  out('OTHER ' .. vim.fs.basename(file) .. ' ' .. vim.bo.filetype .. ' ' .. #vim.lsp.get_clients({ bufnr = 0 }))
end
vim.cmd.edit(vim.env.LSE_JSON)
wait(10000, 'json attach', function() return #vim.lsp.get_clients({ bufnr = 0, name = 'lse' }) > 0 end)
out('JSON ' .. vim.bo.filetype)

vim.cmd.edit(vim.env.LSE_PROMPT)
local buf = vim.api.nvim_get_current_buf()
wait(30000, 'prompt attach', function() return #vim.lsp.get_clients({ bufnr = buf, name = 'lse' }) > 0 end)
out('SERVERS ' .. #vim.lsp.get_clients({ name = 'lse' }))

-- 3. an unsaved edit: the run scores this buffer, and the winner keeps it
local last = vim.api.nvim_buf_line_count(buf)
vim.api.nvim_buf_set_lines(buf, last - 1, last, false, { 't0 keep-me' })
vim.cmd('let &undolevels = &undolevels') -- an undo point, as leaving insert mode makes one
local function text() return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') end
local before = text()

local function lens_titles()
  local titles = {}
  for _, lens in ipairs(vim.lsp.codelens.get(buf)) do table.insert(titles, lens.command.title) end
  return titles
end
wait(20000, 'code lenses', function() return #vim.lsp.codelens.get(buf) >= 3 end)
out('LENSES ' .. table.concat(lens_titles(), ','))

-- the documented keys, typed
local function keys(lhs, line)
  vim.api.nvim_win_set_cursor(0, { line, 0 })
  vim.api.nvim_feedkeys(lhs, 'mx', false)
end

-- 4. Evaluate: `gra` on the instructions, the summary message at the end
picks.codeaction = { '^Evaluate prompt$' }
keys('gra', 4)
wait(90000, 'evaluate summary', function() return note('^LSE evaluate of nums%.prompt%.md: ') end)
out('RESULT ' .. note('^LSE evaluate of nums%.prompt%.md: '))
if text() ~= before then fail('gra changed the buffer') end

-- 5. Evolve: `grx` on the lens line; while it goes, the progress lens says what the progress says
local function running_lens()
  for _, title in ipairs(lens_titles()) do
    if title:find('%(Cancel%)$') then return title end
  end
end
wait(5000, 'the lenses after the run', function() return not running_lens() end)
picks.codelens = { '^Evolve$' }
keys('grx', 1)
if text() ~= before then fail('grx changed the buffer') end
vim.cmd('split ' .. vim.fn.fnameescape(vim.env.LSE_SUITE)) -- look at the suite meanwhile: the prompt stays in view
local checked, stale, seen = 0, 0, nil
wait(120000, 'evolve summary', function()
  -- whenever the progress has paused for 0.4 s, the progress lens shows its latest message
  if progress.kind == 'report' and progress.message ~= seen and vim.uv.hrtime() / 1e9 - progress.at > 0.4 then
    seen = progress.message
    local want = 'evolve: ' .. progress.message .. ' (Cancel)'
    checked = checked + 1
    if not vim.tbl_contains(lens_titles(), want) then
      stale = stale + 1
      out('STALE ' .. want .. ' | ' .. table.concat(lens_titles(), ','))
    end
  end
  return note('^LSE evolve of nums%.prompt%.md: ')
end)
out('LAG ' .. (checked > 0 and 'checked' or 'unchecked') .. ' ' .. stale)
vim.cmd('close') -- back to the prompt's window
out('RESULT ' .. note('^LSE evolve of nums%.prompt%.md: '))
wait(30000, 'the edit', function() return text() ~= before end)
for _, q in ipairs(questions) do out('ASKED ' .. q) end
out('DIFF ' .. (note('^%-%-%- nums%.prompt%.md %(now%)') and 'shown' or 'missing'))
wait(10000, 'applied message', function() return note('now holds the evolved instructions') end)
local after = text()
out('APPLIED ' .. vim.api.nvim_buf_get_lines(buf, -2, -1, false)[1])

-- 6. one undo restores the buffer as it was; redo brings the winner back
vim.cmd('undo')
out('UNDO ' .. (text() == before and 'restored' or 'different'))
vim.cmd('redo')
if text() ~= after then fail('redo') end
vim.cmd('write')

-- 7. Evolve again and cancel it: `grx` on the progress lens
picks.codelens = { '^Evolve$' }
keys('grx', 1)
wait(30000, 'a round under way', function()
  for _, title in ipairs(lens_titles()) do
    if title:find('^evolve: round [1-9]') then return true end
  end
end)
picks.codelens = { '^evolve: round' }
keys('grx', 1)
wait(30000, 'cancelled message', function() return note('^LSE evolve of nums%.prompt%.md cancelled') end)
out('CANCELLED ' .. note('^LSE evolve of nums%.prompt%.md cancelled'))
if text() ~= after then fail('the cancelled run changed the buffer') end
for _, o in ipairs(offered) do out('OFFERED ' .. o) end

-- 8. Show tree: the code lens command opens the tree as text
local client = vim.lsp.get_clients({ bufnr = buf, name = 'lse' })[1]
client:exec_cmd({ title = 'Show tree', command = 'lse.showTree',
                  arguments = { { uri = vim.uri_from_bufnr(buf) } } }, { bufnr = buf })
wait(20000, 'tree buffer', function() return vim.api.nvim_buf_get_name(0):find('^lse%-tree://') ~= nil end)
out('TREE ' .. vim.api.nvim_buf_get_lines(0, 0, 1, false)[1])
vim.cmd('close')
out('PROGRESS ' .. progress.count)

-- 9. :LseTrust asks again; denied, the restarted server runs nothing
vim.cmd('LseTrust')
wait(30000, 'restarted', function()
  local now = vim.lsp.get_clients({ bufnr = buf, name = 'lse' })[1]
  return now ~= nil and now.id ~= client.id and now.initialized
end)
local again = vim.lsp.get_clients({ bufnr = buf, name = 'lse' })[1]
local resp = again:request_sync('workspace/executeCommand', { command = 'lse.evaluate',
                                                              arguments = { { uri = vim.uri_from_bufnr(buf) } } },
                                10000, buf)
out('RETRUST ' .. #trust_asked .. ' ' .. ((resp and resp.err and resp.err.message) or 'started'))
for _, msg in ipairs(trust_asked) do out('TRUST ' .. msg) end
vim.cmd('qall!')
