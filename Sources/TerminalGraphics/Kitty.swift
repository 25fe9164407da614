// The kitty graphics protocol (https://sw.kovidgoyal.net/kitty/graphics-protocol/):
// one transmit-and-display command, `ESC _ G a=T,f=100,q=2,...;<base64> ESC \`, its
// base64 payload cut into chunks of at most 4096 bytes, `m=1` on every chunk but the
// last (`m=0`). `q=2` (repeated in every chunk: kitty takes it from the chunk it answers)
// keeps the terminal from answering on our stdin, which the line editor would read as
// typed keys.

enum Kitty {
    static let chunkSize = 4096

    static func encode(_ image: RGBAImage, png: (() -> [UInt8])?, window: TerminalWindow, tmux: Bool) -> [UInt8] {
        let box = window.pictureBox
        var keys: String
        var payload = png?() ?? []
        var shown: (width: Int, height: Int)
        if !payload.isEmpty {
            // The terminal scales PNG pictures: give it a cell box when the picture is too big.
            keys = "a=T,f=100"
            let s = min(1, Double(box.width) / Double(image.width), Double(box.height) / Double(image.height))
            shown = (Int((Double(image.width) * s).rounded()), Int((Double(image.height) * s).rounded()))
            if s < 1 {
                let c = cells(shown, window)
                keys += ",c=\(c.columns),r=\(c.rows)"
            }
        } else {
            let fitted = Resample.fit(image, in: box)
            payload = fitted.pixels
            keys = "a=T,f=32,s=\(fitted.width),v=\(fitted.height)"
            shown = (fitted.width, fitted.height)
        }
        // Inside tmux the outer terminal's cursor moves but tmux's does not: keep the
        // cursor still (C=1) and move it with newlines that tmux sees as well.
        let rowsBelow = tmux ? cells(shown, window).rows : 0
        if tmux { keys += ",C=1" }
        keys += ",q=2"
        return frame(keys: keys, base64: Base64.encode(payload), tmux: tmux)
            + [UInt8](repeating: 0x0A, count: max(1, rowsBelow))
    }

    /// The escape sequences for one transmission: `keys` in the first chunk only.
    static func frame(keys: String, base64: [UInt8], tmux: Bool) -> [UInt8] {
        var out = [UInt8]()
        var start = 0
        repeat {
            let end = min(base64.count, start + chunkSize)
            let more = end < base64.count
            var command: [UInt8] = [0x1B, UInt8(ascii: "_"), UInt8(ascii: "G")]
            command += Array(((start == 0 ? keys + "," : "") + (more ? "m=1" : "m=0") + (start == 0 ? "" : ",q=2") + ";").utf8)
            command += base64[start..<end]
            command += [0x1B, UInt8(ascii: "\\")]
            out += tmux ? Tmux.wrap(command) : command
            start = end
        } while start < base64.count
        return out
    }

    /// Character cells covering `pixels` (at least one each way, at most the window).
    static func cells(_ pixels: (width: Int, height: Int), _ window: TerminalWindow) -> (columns: Int, rows: Int) {
        let c = Int((Double(pixels.width) / window.cellWidth).rounded(.up))
        let r = Int((Double(pixels.height) / window.cellHeight).rounded(.up))
        return (max(1, min(window.columns, c)), max(1, min(max(1, window.rows - 1), r)))
    }
}

// iTerm2's inline images (https://iterm2.com/documentation-images.html):
// `ESC ] 1337 ; File=inline=1;size=<bytes>;...:<base64 of the file> BEL`.
enum ITermImages {
    static func encode(_ image: RGBAImage, png: (() -> [UInt8])?, window: TerminalWindow, tmux: Bool) -> [UInt8] {
        let box = window.pictureBox
        var file = png?() ?? []
        var args = "inline=1"
        if !file.isEmpty {
            args += ";size=\(file.count)"
            let s = min(1, Double(box.width) / Double(image.width), Double(box.height) / Double(image.height))
            if s < 1 {
                let c = Kitty.cells((Int((Double(image.width) * s).rounded()), Int((Double(image.height) * s).rounded())), window)
                args += ";width=\(c.columns);height=\(c.rows)"
            }
        } else {
            file = PNGWriter.encode(Resample.fit(image, in: box))
            args += ";size=\(file.count)"
        }
        args += ";preserveAspectRatio=1"
        var out: [UInt8] = [0x1B, UInt8(ascii: "]")] + Array("1337;File=\(args):".utf8)
        out += Base64.encode(file)
        out.append(0x07)
        if tmux { out = Tmux.wrap(out) }
        out.append(0x0A)
        return out
    }
}
