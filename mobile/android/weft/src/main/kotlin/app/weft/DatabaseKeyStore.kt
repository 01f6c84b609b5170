package app.weft

import android.content.Context
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import java.io.File
import java.security.KeyStore
import java.security.SecureRandom
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/**
 * The 32-byte database key for `openNode`, kept wrapped by an Android Keystore key.
 *
 * The Keystore never hands out a key's bytes (that is its point), so it cannot hold the
 * database key itself. Instead: a random 32-byte key, encrypted (AES-256-GCM) under a Keystore
 * key that never leaves the secure hardware, stored as `nonce ‖ ciphertext` in the app's
 * no-backup directory. Whoever copies the file off the phone has bytes that only this phone's
 * Keystore decrypts.
 *
 * The Keystore key needs no user authentication and is not `setUnlockedDeviceRequired`, on
 * purpose: the mesh service and background sync open the node with the screen locked. (An app
 * that wants the database closed while the phone is locked sets it, and gives up background
 * delivery while locked.) Neither the wrapped key nor the database should be in a backup (the
 * no-backup directory here; exclude the Weft home in the app's backup rules): restored on
 * another phone, the wrapped key is unreadable without the Keystore key, which is not backed up.
 */
class DatabaseKeyStore(context: Context, private val alias: String = "weft-database-key") {
    private val file = File(context.noBackupFilesDir, "$alias.wrapped")

    /** The database key: unwrapped if stored, else made, wrapped and stored. */
    @Synchronized
    fun key(): ByteArray {
        val keystore = KeyStore.getInstance(KEYSTORE).apply { load(null) }
        val wrapping = keystore.getKey(alias, null) as SecretKey?
        if (file.exists()) {
            checkNotNull(wrapping) {
                "the Keystore key $alias is gone (the app's data was restored, or the Keystore was reset): " +
                    "the database cannot be opened on this phone"
            }
            return unwrap(wrapping, file.readBytes())
        }
        val key = ByteArray(32).also { SecureRandom().nextBytes(it) }
        val blob = wrap(wrapping ?: newWrappingKey(), key)
        val partial = File(file.path + ".partial")
        partial.writeBytes(blob)
        check(partial.renameTo(file)) { "could not store the wrapped key" }
        return key
    }

    /**
     * The panic wipe's part (after `WeftNode.wipe()`): the wrapped key's file overwritten and
     * deleted, and the Keystore key deleted, so the database key is gone from this phone even
     * if a copy of the database survived somewhere.
     */
    @Synchronized
    fun destroy() {
        if (file.exists()) {
            runCatching { file.writeBytes(ByteArray(file.length().toInt())) }
            file.delete()
        }
        val keystore = KeyStore.getInstance(KEYSTORE).apply { load(null) }
        if (keystore.containsAlias(alias)) keystore.deleteEntry(alias)
    }

    private fun newWrappingKey(): SecretKey {
        val generator = KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, KEYSTORE)
        generator.init(
            KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
                .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
                .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
                .setKeySize(256)
                .build(),
        )
        return generator.generateKey()
    }

    /** The Keystore picks the nonce (it refuses one from us by default). */
    private fun wrap(wrapping: SecretKey, key: ByteArray): ByteArray {
        val cipher = Cipher.getInstance(TRANSFORMATION)
        cipher.init(Cipher.ENCRYPT_MODE, wrapping)
        cipher.updateAAD(alias.toByteArray())
        val sealed = cipher.doFinal(key)
        val nonce = cipher.iv
        check(nonce.size == NONCE_BYTES)
        return nonce + sealed
    }

    private fun unwrap(wrapping: SecretKey, blob: ByteArray): ByteArray {
        val cipher = Cipher.getInstance(TRANSFORMATION)
        cipher.init(Cipher.DECRYPT_MODE, wrapping, GCMParameterSpec(128, blob, 0, NONCE_BYTES))
        cipher.updateAAD(alias.toByteArray())
        return cipher.doFinal(blob, NONCE_BYTES, blob.size - NONCE_BYTES)
    }

    private companion object {
        const val KEYSTORE = "AndroidKeyStore"
        const val TRANSFORMATION = "AES/GCM/NoPadding"
        const val NONCE_BYTES = 12
    }
}
