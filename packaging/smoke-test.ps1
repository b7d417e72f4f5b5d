<#
.SYNOPSIS
    Smoke test of an installed or frozen setup-tool.exe on Windows, run the way installers run it.

.DESCRIPTION
    Used by .github/workflows/windows.yml on a hosted Windows runner (needs python on PATH for
    one sqlite3 edit). Checks, with C:\Windows\System32 as the working directory like an MSI
    custom action: the demo builds; a dry run redirected to a file (Python then writes the ANSI
    code page) survives a non-ASCII name; an unattended run leaves nothing in System32 and writes
    its log and report to %ProgramData%\setup-tool; history records the Windows account as
    DOMAIN\user; declining the wizard's confirmation exits 7. Exit code 0 when all hold.
#>
param([Parameter(Mandatory = $true)][string]$Exe)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$failures = @()
function Check([bool]$Condition, [string]$What) {
    if ($Condition) { Write-Host "ok   $What" } else { Write-Host "FAIL $What"; $script:failures += $What }
}

$work = Join-Path $env:RUNNER_TEMP ("smoke-" + [guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory -Path $work | Out-Null
$db = Join-Path $work 'crm.db'
$fresh = Join-Path $work 'fresh.db'
$url = 'sqlite:///' + ($db -replace '\\', '/')
$freshUrl = 'sqlite:///' + ($fresh -replace '\\', '/')

& $Exe --version
Check ($LASTEXITCODE -eq 0) 'setup-tool --version'
& $Exe demo $db --appointments 2000 | Out-Null
Check ($LASTEXITCODE -eq 0) 'setup-tool demo'
Copy-Item $db $fresh

# The person behind the individual row that switches the preference off gets a name no
# Western code page holds.
$rename = @'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
owner = db.execute("select owner_id from UserPreference where prefkey = 'DiarySynchronizerActive' and deflevel = 5").fetchone()[0]
person = db.execute("select person_id from associate where associate_id = ?", (owner,)).fetchone()[0]
db.execute("update person set firstname = ?, lastname = ? where person_id = ?", ("\u0141ukasz", "\u7530\u4e2d", person))
db.commit()
'@
python -c $rename $db
Check ($LASTEXITCODE -eq 0) 'a non-ASCII name in an override row'

$system32 = Join-Path $env:SystemRoot 'System32'
$before = @(Get-ChildItem $system32 -Filter 'setup-tool-*' -ErrorAction SilentlyContinue).Count
$logs = Join-Path $env:ProgramData 'setup-tool'
Push-Location $system32
try {
    $plan = Join-Path $work 'plan.txt'
    cmd /c "`"$Exe`" upgrade --database-url $url --dry-run > `"$plan`" 2>&1"
    Check ($LASTEXITCODE -eq 0) 'dry run redirected to a file (ANSI code page) exits 0'
    $text = Get-Content -Raw $plan
    Check ($text -match 'ukasz') 'the dry run names the person'
    Check ($text -notmatch 'UnicodeEncodeError') 'no UnicodeEncodeError'

    & $Exe upgrade --database-url $url --unattended
    Check ($LASTEXITCODE -eq 4) 'unattended upgrade of the demo exits 4 (done, action required)'
    $after = @(Get-ChildItem $system32 -Filter 'setup-tool-*' -ErrorAction SilentlyContinue).Count
    Check ($after -eq $before) 'nothing written to C:\Windows\System32'
    Check (@(Get-ChildItem $logs -Filter 'setup-tool-*.log').Count -ge 1) "a log in $logs"
    Check (@(Get-ChildItem $logs -Filter 'setup-tool-*-report.html').Count -ge 1) "a report in $logs"

    $history = Join-Path $work 'history.json'
    & $Exe history --database-url $url --format json --report $history
    $run = (Get-Content -Raw $history | ConvertFrom-Json).runs[0]
    Check ($run.os_user -match '^[^\\]+\\[^\\]+$') "history records DOMAIN\user ($($run.os_user))"

    "n`n" | & $Exe upgrade --database-url $freshUrl
    Check ($LASTEXITCODE -eq 7) 'declining the confirmation exits 7 (cancelled by the operator)'
}
finally {
    Pop-Location
}

if ($failures.Count -gt 0) { Write-Host "$($failures.Count) check(s) failed"; exit 1 }
Write-Host 'All smoke checks passed.'
exit 0
