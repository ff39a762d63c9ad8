-- Headless Neovim (0.11+) drives lse-server: attach to a prompt file, list its code actions,
-- run "Evolve prompt" and wait for the server's workspace/applyEdit to change the buffer.
-- Environment: LSE_PYTHON (interpreter with lse installed), LSE_PROMPT (file), LSE_INIT (JSON init options).
local function out(s) io.stdout:write(s .. '\n') end

vim.lsp.config('lse', {
  cmd = { vim.env.LSE_PYTHON, '-m', 'lse_server', '--stdio' },
  filetypes = { 'markdown' },
  root_markers = { 'lse.toml', '.git' },
  init_options = vim.json.decode(vim.env.LSE_INIT or '{}'),
})
vim.lsp.enable('lse')
vim.cmd.edit(vim.env.LSE_PROMPT)

if not vim.wait(30000, function() return #vim.lsp.get_clients({ bufnr = 0, name = 'lse' }) > 0 end, 100) then
  out('NO ATTACH'); vim.cmd('cquit 2')
end
local client = vim.lsp.get_clients({ bufnr = 0, name = 'lse' })[1]
vim.wait(30000, function() return client.initialized end, 100)

local params = {
  textDocument = vim.lsp.util.make_text_document_params(0),
  range = { start = { line = 3, character = 0 }, ['end'] = { line = 3, character = 0 } },
  context = { diagnostics = {} },
}
local resp = client:request_sync('textDocument/codeAction', params, 10000, 0)
local titles, evolve = {}, nil
for _, action in ipairs((resp and resp.result) or {}) do
  table.insert(titles, action.title)
  if action.title == 'Evolve prompt' then evolve = action end
end
out('ACTIONS ' .. table.concat(titles, ','))
if not evolve then vim.cmd('cquit 4') end

local before = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
client:exec_cmd(evolve.command, { bufnr = 0 })
local changed = vim.wait(90000, function()
  return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n') ~= before
end, 200)
if not changed then out('NO EDIT'); vim.cmd('cquit 3') end
vim.cmd('write')
out('APPLIED')
vim.cmd('qall!')
