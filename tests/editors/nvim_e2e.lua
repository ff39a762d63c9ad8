-- Headless Neovim (0.11+) with the configuration from docs/editors.md, as a user would drive it:
-- diagnostics on a suite -> Evaluate (code action) on a buffer with an unsaved edit -> the summary message ->
-- Evolve -> "Show diff", then "Apply" in the question the server asks -> the buffer holds the winner -> one undo
-- restores it -> "Show tree" opens the tree as text.
-- Environment: LSE_CONFIG (the docs' Lua block as a file), LSE_ROOT (the workspace), LSE_PROMPT, LSE_SUITE
-- (a suite with a duplicate id), LSE_OTHER (a Markdown file in the workspace that is not LSE's).
local function out(s) io.stdout:write(s .. '\n') end
local function fail(what, code)
  out('FAIL ' .. what)
  vim.cmd('cquit ' .. (code or 1))
end
local function wait(ms, what, cond)
  if not vim.wait(ms, cond, 50) then fail(what) end
end

-- what a user sees: messages (vim.notify) and the choices the server offers (vim.ui.select)
local notes, questions = {}, {}
vim.notify = function(msg, level) table.insert(notes, msg) end
local echo = vim.api.nvim_echo
vim.api.nvim_echo = function(chunks, history, opts) -- window/showMessage arrives as "LSP[lse][Info] …"
  local text = ''
  for _, chunk in ipairs(chunks) do text = text .. chunk[1] end
  if history then table.insert(notes, (text:gsub('^LSP%[lse%]%[%a+%] ', ''):gsub('\n$', ''))) end
  return echo(chunks, history, opts)
end
local answers = { 'Show diff', 'Apply' }
vim.ui.select = function(items, opts, on_choice)
  local titles = {}
  for _, item in ipairs(items) do table.insert(titles, item.title) end
  table.insert(questions, opts.prompt .. '[' .. table.concat(titles, '|') .. ']')
  local want = table.remove(answers, 1)
  for _, item in ipairs(items) do
    if item.title == want then return on_choice(item) end
  end
  on_choice(nil)
end
local function note(pattern)
  for _, n in ipairs(notes) do
    if n:find(pattern) then return n end
  end
end
local progress = 0
vim.api.nvim_create_autocmd('LspProgress', { callback = function() progress = progress + 1 end })

-- vim.secure asks whether to trust the workspace folder: the user answers "allow" (the 4th choice)
local trust_asked = {}
vim.fn.confirm = function(msg) table.insert(trust_asked, msg); return 4 end
dofile(vim.env.LSE_CONFIG)

-- 1. diagnostics on a suite
vim.cmd.edit(vim.env.LSE_SUITE)
local suite_buf = vim.api.nvim_get_current_buf()
wait(30000, 'attach', function() return #vim.lsp.get_clients({ bufnr = 0, name = 'lse' }) > 0 end)
wait(30000, 'diagnostics', function() return #vim.diagnostic.get(suite_buf) > 0 end)
out('DIAG ' .. vim.diagnostic.get(suite_buf)[1].code)

-- 2. a Markdown file that is not LSE's gets no server; the prompt shares the workspace's one server
vim.cmd.edit(vim.env.LSE_OTHER)
vim.wait(500)
out('OTHER ' .. #vim.lsp.get_clients({ bufnr = 0 }))
vim.cmd.edit(vim.env.LSE_PROMPT)
local buf = vim.api.nvim_get_current_buf()
wait(30000, 'prompt attach', function() return #vim.lsp.get_clients({ bufnr = buf, name = 'lse' }) > 0 end)
out('SERVERS ' .. #vim.lsp.get_clients({ name = 'lse' }))
local client = vim.lsp.get_clients({ bufnr = buf, name = 'lse' })[1]

-- 3. an unsaved edit: the run scores this buffer, and the winner keeps it
local last = vim.api.nvim_buf_line_count(buf)
vim.api.nvim_buf_set_lines(buf, last - 1, last, false, { 't0 keep-me' })
vim.cmd('let &undolevels = &undolevels') -- an undo point, as leaving insert mode makes one
local before = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')

wait(20000, 'code lenses', function()
  vim.lsp.codelens.refresh({ bufnr = buf })
  vim.wait(200)
  return #vim.lsp.codelens.get(buf) >= 3
end)
local lenses = {}
for _, lens in ipairs(vim.lsp.codelens.get(buf)) do table.insert(lenses, lens.command.title) end
out('LENSES ' .. table.concat(lenses, ','))

local function action(title)
  local resp = client:request_sync('textDocument/codeAction', {
    textDocument = vim.lsp.util.make_text_document_params(buf),
    range = { start = { line = 3, character = 0 }, ['end'] = { line = 3, character = 0 } },
    context = { diagnostics = {} },
  }, 10000, buf)
  for _, a in ipairs((resp and resp.result) or {}) do
    if a.title == title then return a end
  end
  fail('no code action ' .. title)
end

-- 4. Evaluate: a summary message at the end
client:exec_cmd(action('Evaluate prompt').command, { bufnr = buf })
wait(90000, 'evaluate summary', function() return note('^LSE evaluate of nums%.prompt%.md: ') end)
out('RESULT ' .. note('^LSE evaluate of nums%.prompt%.md: '))

-- 5. Evolve: summary, the question (Show diff, then Apply), the edit
client:exec_cmd(action('Evolve prompt').command, { bufnr = buf })
wait(120000, 'evolve summary', function() return note('^LSE evolve of nums%.prompt%.md: ') end)
out('RESULT ' .. note('^LSE evolve of nums%.prompt%.md: '))
wait(30000, 'the edit', function()
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') ~= before
end)
for _, q in ipairs(questions) do out('ASKED ' .. q) end
out('DIFF ' .. (note('^%-%-%- nums%.prompt%.md %(now%)') and 'shown' or 'missing'))
wait(10000, 'applied message', function() return note('now holds the evolved instructions') end)
local after = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
out('APPLIED ' .. vim.api.nvim_buf_get_lines(buf, -2, -1, false)[1])

-- 6. one undo restores the buffer as it was; redo brings the winner back
vim.cmd('undo')
out('UNDO ' .. (table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') == before and 'restored' or 'different'))
vim.cmd('redo')
if table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n') ~= after then fail('redo') end
vim.cmd('write')

-- 7. Show tree: the code lens command opens the tree as text
client:exec_cmd({ title = 'Show tree', command = 'lse.showTree',
                  arguments = { { uri = vim.uri_from_bufnr(buf) } } }, { bufnr = buf })
wait(20000, 'tree buffer', function() return vim.api.nvim_buf_get_name(0):find('^lse%-tree://') ~= nil end)
out('TREE ' .. vim.api.nvim_buf_get_lines(0, 0, 1, false)[1])
out('PROGRESS ' .. progress)
out('TRUST ' .. #trust_asked .. ' ' .. (trust_asked[1] or ''))
vim.cmd('qall!')
