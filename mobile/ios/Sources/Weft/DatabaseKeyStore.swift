import Foundation
import Security

/// The 32-byte database key for `openNode`, kept in the Keychain (the iOS counterpart of the
/// Android module's `DatabaseKeyStore`; the Keychain stores the key itself, encrypted by the
/// Secure Enclave's keys, so nothing needs wrapping by hand).
///
/// `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly`: readable once the phone has been
/// unlocked after a restart, also while it is locked again, so that a Bluetooth wake or a
/// background task can open the node; never in a backup or on another device.
/// (`WhenUnlocked` would keep the database closed whenever the phone is locked, and the mesh
/// would stop in the pocket.) The Weft home should also be excluded from iCloud backup
/// (`URLResourceValues.isExcludedFromBackup`): its key does not travel, so a restored copy is
/// unreadable anyway. Not compiled here (no Xcode).
public struct DatabaseKeyStore {
    public enum Failure: Error { case keychain(OSStatus), random(OSStatus) }

    private let service: String
    private let account: String

    public init(service: String = "app.weft", account: String = "database-key") {
        self.service = service
        self.account = account
    }

    /// The key: read if stored, else made and stored.
    public func key() throws -> Data {
        if let stored = try read() { return stored }
        var bytes = [UInt8](repeating: 0, count: 32)
        let made = SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes)
        guard made == errSecSuccess else { throw Failure.random(made) }
        var add = base
        add[kSecValueData as String] = Data(bytes)
        add[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        let status = SecItemAdd(add as CFDictionary, nil)
        if status == errSecDuplicateItem, let stored = try read() { return stored } // raced another opener
        guard status == errSecSuccess else { throw Failure.keychain(status) }
        return Data(bytes)
    }

    /// The panic wipe's part (after `WeftNode.wipe()`): the key deleted from the Keychain, so
    /// it is gone from this phone even if a copy of the database survived somewhere.
    public func destroy() throws {
        let status = SecItemDelete(base as CFDictionary)
        guard status == errSecSuccess || status == errSecItemNotFound else { throw Failure.keychain(status) }
    }

    private var base: [String: Any] {
        [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: service,
            kSecAttrAccount as String: account,
        ]
    }

    private func read() throws -> Data? {
        var query = base
        query[kSecReturnData as String] = true
        query[kSecMatchLimit as String] = kSecMatchLimitOne
        var item: CFTypeRef?
        let status = SecItemCopyMatching(query as CFDictionary, &item)
        if status == errSecItemNotFound { return nil }
        guard status == errSecSuccess, let data = item as? Data else { throw Failure.keychain(status) }
        return data
    }
}
