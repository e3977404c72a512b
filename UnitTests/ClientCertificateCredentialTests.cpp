#include "Azure/ClientCertificateCredential.h"
#include "Azure/TokenRequest.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Common/Logger.h"
#include "LoopbackHttpServer.h"

#include <gtest/gtest.h>
#include <json/reader.h>
#include <json/value.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace AzureDicom;
using namespace AzureDicom::Testing;

namespace
{
const char TENANT_ID[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const char CLIENT_ID[] = "11111111-2222-3333-4444-555555555555";
const char SCOPE[] = "https://dicom.healthcareapis.azure.com/.default";
const char PASSWORD[] = "Pw+8Q~s/cret&=x";
const char AUDIENCE[] = "https://login.example/tenant/oauth2/v2.0/token";
const char JWT_BEARER[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const int64_t NOW_SECONDS = 1700000000;
const int64_t ASSERTION_LIFETIME_SECONDS = 600;
const int RSA_BITS = 2048;
const long DAY_SECONDS = 24 * 3600;
const long YEAR_SECONDS = 365 * DAY_SECONDS;

const char TOKEN_ANSWER[] =
    "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"eyJ0eXAi.eyJhdWQi.c2ln\"}";

// The shape of Entra's response to a certificate that is not registered for the application.
const char UNKNOWN_CERTIFICATE_ANSWER[] =
    "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS700027: Client assertion "
    "failed signature validation. Trace ID: 3d1e2f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f\","
    "\"error_codes\":[700027],\"trace_id\":\"3d1e2f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f\"}";


struct OpenSslDeleter
{
  void operator()(BIO* bio) const
  {
    BIO_free(bio);
  }

  void operator()(X509* certificate) const
  {
    X509_free(certificate);
  }

  void operator()(EVP_PKEY* key) const
  {
    EVP_PKEY_free(key);
  }

  void operator()(PKCS12* pkcs12) const
  {
    PKCS12_free(pkcs12);
  }

  void operator()(EVP_MD_CTX* context) const
  {
    EVP_MD_CTX_free(context);
  }

  void operator()(OSSL_LIB_CTX* context) const
  {
    OSSL_LIB_CTX_free(context);
  }

  void operator()(OSSL_PROVIDER* provider) const
  {
    OSSL_PROVIDER_unload(provider);
  }

  void operator()(STACK_OF(X509) * certificates) const
  {
    sk_X509_free(certificates);  // the certificates belong to the test fixture
  }
};

using BioPtr = std::unique_ptr<BIO, OpenSslDeleter>;
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, OpenSslDeleter>;
using DigestContextPtr = std::unique_ptr<EVP_MD_CTX, OpenSslDeleter>;
using LibraryContextPtr = std::unique_ptr<OSSL_LIB_CTX, OpenSslDeleter>;
using ProviderPtr = std::unique_ptr<OSSL_PROVIDER, OpenSslDeleter>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), OpenSslDeleter>;


std::string ReadBio(BIO* bio)
{
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(length));
}


// Signs a certificate for key with itself, valid from now + notBeforeOffset to
// now + notAfterOffset (seconds, negative for the past).
X509Ptr MakeCertificate(EVP_PKEY* key, const char* commonName, long notBeforeOffset,
                        long notAfterOffset)
{
  X509Ptr certificate(X509_new());
  X509_set_version(certificate.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(certificate.get()), notBeforeOffset);
  X509_gmtime_adj(X509_getm_notAfter(certificate.get()), notAfterOffset);
  X509_set_pubkey(certificate.get(), key);

  X509_NAME* name = X509_get_subject_name(certificate.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(commonName), -1, -1, 0);
  X509_set_issuer_name(certificate.get(), name);
  X509_sign(certificate.get(), key, EVP_sha256());
  return certificate;
}


std::string ToPem(X509* certificate)
{
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), certificate);
  return ReadBio(bio.get());
}


// Writes the key as PKCS#8 ("PRIVATE KEY", or "ENCRYPTED PRIVATE KEY" with AES-256 when a
// password is given).
std::string KeyToPem(EVP_PKEY* key, const std::string& password = "")
{
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PKCS8PrivateKey(bio.get(), key, password.empty() ? nullptr : EVP_aes_256_cbc(),
                                password.empty() ? nullptr : password.c_str(),
                                static_cast<int>(password.size()), nullptr, nullptr);
  return ReadBio(bio.get());
}


// Writes the key in the traditional format ("RSA PRIVATE KEY" with a Proc-Type header).
std::string KeyToTraditionalPem(EVP_PKEY* key, const std::string& password)
{
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey_traditional(
      bio.get(), key, EVP_aes_128_cbc(),
      reinterpret_cast<unsigned char*>(const_cast<char*>(password.c_str())),
      static_cast<int>(password.size()), nullptr, nullptr);
  return ReadBio(bio.get());
}


std::string ToDer(PKCS12* pkcs12)
{
  BioPtr bio(BIO_new(BIO_s_mem()));
  i2d_PKCS12_bio(bio.get(), pkcs12);
  return ReadBio(bio.get());
}


// Writes a PKCS#12 file with OpenSSL 3's defaults (AES-256, PBKDF2, a SHA-256 MAC). A null
// password gives a file without encryption.
std::string ToPkcs12(EVP_PKEY* key, X509* certificate, const char* password,
                     STACK_OF(X509) * chain = nullptr)
{
  Pkcs12Ptr pkcs12(PKCS12_create(password, "test", key, certificate, chain, 0, 0, 0, 0, 0));
  EXPECT_TRUE(pkcs12 != nullptr) << ERR_reason_error_string(ERR_get_error());
  return pkcs12 ? ToDer(pkcs12.get()) : std::string();
}


std::string ToDer(X509* certificate)
{
  unsigned char* der = nullptr;
  const int length = i2d_X509(certificate, &der);
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  return bytes;
}


std::string Digest(const std::string& data, const EVP_MD* algorithm)
{
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, algorithm, nullptr);
  return std::string(reinterpret_cast<char*>(digest), length);
}


std::string ToUpperHex(const std::string& bytes)
{
  static const char DIGITS[] = "0123456789ABCDEF";
  std::string hex;
  for (const char c : bytes)
  {
    hex += DIGITS[static_cast<unsigned char>(c) >> 4];
    hex += DIGITS[static_cast<unsigned char>(c) & 0x0F];
  }
  return hex;
}


std::string EncodeBase64(const std::string& bytes)
{
  std::string encoded(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&encoded[0]),
                      reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  encoded.resize(length);
  return encoded;
}


std::string EncodeBase64Url(const std::string& bytes)
{
  std::string encoded = EncodeBase64(bytes);
  for (char& c : encoded)
  {
    c = c == '+' ? '-' : (c == '/' ? '_' : c);
  }
  return encoded.substr(0, encoded.find('='));
}


std::string DecodeBase64Url(std::string text)
{
  for (char& c : text)
  {
    c = c == '-' ? '+' : (c == '_' ? '/' : c);
  }
  const size_t padding = (4 - text.size() % 4) % 4;
  text.append(padding, '=');

  std::string decoded(text.size() / 4 * 3, '\0');
  const int length =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(&decoded[0]),
                      reinterpret_cast<const unsigned char*>(text.data()), text.size());
  EXPECT_GE(length, 0) << text;
  decoded.resize(length < 0 ? 0 : static_cast<size_t>(length) - padding);
  return decoded;
}


std::vector<std::string> SplitJwt(const std::string& jwt)
{
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot = jwt.find('.'); dot != std::string::npos; dot = jwt.find('.', start))
  {
    parts.push_back(jwt.substr(start, dot - start));
    start = dot + 1;
  }
  parts.push_back(jwt.substr(start));
  return parts;
}


Json::Value DecodeJwtPart(const std::string& part)
{
  const std::string text = DecodeBase64Url(part);
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  Json::Value value;
  std::string errors;
  EXPECT_TRUE(reader->parse(text.data(), text.data() + text.size(), &value, &errors)) << text;
  return value;
}


// Verifies the RS256 signature of a JWT with the certificate's public key.
bool VerifyJwt(const std::string& jwt, X509* certificate)
{
  const size_t lastDot = jwt.rfind('.');
  const std::string signingInput = jwt.substr(0, lastDot);
  const std::string signature = DecodeBase64Url(jwt.substr(lastDot + 1));

  DigestContextPtr context(EVP_MD_CTX_new());
  if (EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr,
                           X509_get0_pubkey(certificate)) != 1)
  {
    return false;
  }

  const int verified = EVP_DigestVerify(
      context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(signingInput.data()), signingInput.size());
  ERR_clear_error();
  return verified == 1;
}


CertificateSource MakePemSource(const std::string& pem, const std::string& password = "")
{
  CertificateSource source;
  source.data = pem;
  source.password = password;
  return source;
}


class RecordingLogger : public ILogger
{
public:
  void Info(const std::string& message) override
  {
    infos.push_back(message);
  }

  void Warning(const std::string& message) override
  {
    warnings.push_back(message);
  }

  void Error(const std::string& message) override
  {
    errors.push_back(message);
  }

  std::vector<std::string> infos;
  std::vector<std::string> warnings;
  std::vector<std::string> errors;
};


CannedResponse MakeCanned(int status, const std::string& body)
{
  CannedResponse canned;
  canned.status = status;
  canned.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  canned.body = body;
  return canned;
}


class ClientCertificateCredentialTest : public ::testing::Test
{
protected:
  // RSA key generation takes a noticeable time, so the suite shares two keys.
  static void SetUpTestSuite()
  {
    key_.reset(EVP_RSA_gen(RSA_BITS));
    otherKey_.reset(EVP_RSA_gen(RSA_BITS));
    certificate_ = MakeCertificate(key_.get(), "orthanc-mirror", -3600, YEAR_SECONDS);
    otherCertificate_ = MakeCertificate(otherKey_.get(), "other", -3600, YEAR_SECONDS);
  }

  static void TearDownTestSuite()
  {
    key_.reset();
    otherKey_.reset();
    certificate_.reset();
    otherCertificate_.reset();
  }

  void SetUp() override
  {
    ASSERT_TRUE(key_ != nullptr);
    ASSERT_TRUE(otherKey_ != nullptr);
    ASSERT_TRUE(certificate_ != nullptr);
    ASSERT_TRUE(otherCertificate_ != nullptr);

    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/certificate-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(&pattern[0]));
    directory_ = pattern;
  }

  void TearDown() override
  {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  std::string WriteFile(const std::string& name, const std::string& content)
  {
    const std::string path = directory_ + "/" + name;
    std::ofstream file(path, std::ios::binary);
    file << content;
    return path;
  }

  // Reads the file and returns the message of the BadConfiguration exception it throws.
  static std::string ReadFileError(const std::string& path, const std::string& password)
  {
    try
    {
      ReadCertificateFile(path, password);
    }
    catch (const Exception& e)
    {
      EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode()) << e.what();
      return e.what();
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception for " << path;
    return std::string();
  }

  static std::string AssertionError(const CertificateSource& source)
  {
    try
    {
      CreateClientAssertion(source, CLIENT_ID, AUDIENCE, NOW_SECONDS);
    }
    catch (const Exception& e)
    {
      EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode()) << e.what();
      return e.what();
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return std::string();
  }

  static std::string GetX5t(const std::string& jwt)
  {
    return DecodeJwtPart(SplitJwt(jwt)[0])["x5t"].asString();
  }

  std::unique_ptr<ClientCertificateCredential> MakeCredential(ILogger* logger = nullptr)
  {
    return std::make_unique<ClientCertificateCredential>(
        server_.GetUrl("/"), TENANT_ID, CLIENT_ID, SCOPE,
        [this]
        {
          certificateReads_++;
          return source_;
        },
        TlsSettings(), logger);
  }

  std::string GetTokenUrl()
  {
    return server_.GetUrl(std::string("/") + TENANT_ID + "/oauth2/v2.0/token");
  }

  Exception RequestTokenError(ClientCertificateCredential& credential)
  {
    try
    {
      credential.RequestToken();
    }
    catch (const Exception& e)
    {
      return e;
    }

    ADD_FAILURE() << "expected an AzureDicom::Exception";
    return Exception(ErrorCode::InternalError, "no exception");
  }

  static std::string GetPem()
  {
    return ToPem(certificate_.get()) + KeyToPem(key_.get());
  }

  static KeyPtr key_;
  static KeyPtr otherKey_;
  static X509Ptr certificate_;
  static X509Ptr otherCertificate_;

  std::string directory_;
  LoopbackHttpServer server_;
  CertificateSource source_ = MakePemSource(GetPem());
  int certificateReads_ = 0;
};

KeyPtr ClientCertificateCredentialTest::key_;
KeyPtr ClientCertificateCredentialTest::otherKey_;
X509Ptr ClientCertificateCredentialTest::certificate_;
X509Ptr ClientCertificateCredentialTest::otherCertificate_;
}  // namespace


TEST_F(ClientCertificateCredentialTest, AssertionHasThreeParts)
{
  const std::string jwt = CreateClientAssertion(source_, CLIENT_ID, AUDIENCE, NOW_SECONDS);
  const std::vector<std::string> parts = SplitJwt(jwt);

  ASSERT_EQ(3u, parts.size()) << jwt;
  for (const std::string& part : parts)
  {
    EXPECT_FALSE(part.empty()) << jwt;
    EXPECT_EQ(std::string::npos, part.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                        "abcdefghijklmnopqrstuvwxyz0123456789-_"))
        << part;
  }
}


TEST_F(ClientCertificateCredentialTest, AssertionHeaderFields)
{
  const std::string jwt = CreateClientAssertion(source_, CLIENT_ID, AUDIENCE, NOW_SECONDS);
  const Json::Value header = DecodeJwtPart(SplitJwt(jwt)[0]);
  const std::string der = ToDer(certificate_.get());

  EXPECT_EQ("RS256", header["alg"].asString());
  EXPECT_EQ("JWT", header["typ"].asString());
  EXPECT_EQ(EncodeBase64Url(Digest(der, EVP_sha1())), header["x5t"].asString());
  EXPECT_EQ(EncodeBase64Url(Digest(der, EVP_sha256())), header["x5t#S256"].asString());
  EXPECT_EQ(4u, header.size());
}


TEST_F(ClientCertificateCredentialTest, AssertionClaims)
{
  const std::string jwt = CreateClientAssertion(source_, CLIENT_ID, AUDIENCE, NOW_SECONDS);
  const Json::Value claims = DecodeJwtPart(SplitJwt(jwt)[1]);
  const std::regex uuidVersion4(
      "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");

  EXPECT_EQ(AUDIENCE, claims["aud"].asString());
  EXPECT_EQ(CLIENT_ID, claims["iss"].asString());
  EXPECT_EQ(CLIENT_ID, claims["sub"].asString());
  EXPECT_TRUE(std::regex_match(claims["jti"].asString(), uuidVersion4)) << claims["jti"].asString();
  EXPECT_EQ(NOW_SECONDS, claims["nbf"].asInt64());
  EXPECT_EQ(NOW_SECONDS, claims["iat"].asInt64());
  EXPECT_EQ(NOW_SECONDS + ASSERTION_LIFETIME_SECONDS, claims["exp"].asInt64());
}


TEST_F(ClientCertificateCredentialTest, AssertionJtiUnique)
{
  std::set<std::string> identifiers;
  const size_t count = 20;
  for (size_t i = 0; i < count; i++)
  {
    const std::string jwt = CreateClientAssertion(source_, CLIENT_ID, AUDIENCE, NOW_SECONDS);
    identifiers.insert(DecodeJwtPart(SplitJwt(jwt)[1])["jti"].asString());
  }

  EXPECT_EQ(count, identifiers.size());
}


TEST_F(ClientCertificateCredentialTest, AssertionSignatureVerifies)
{
  const std::string jwt = CreateClientAssertion(source_, CLIENT_ID, AUDIENCE, NOW_SECONDS);
  const std::vector<std::string> parts = SplitJwt(jwt);
  const std::string otherClaims = EncodeBase64Url("{\"aud\":\"https://attacker.example\"}");
  const std::string tampered = parts[0] + "." + otherClaims + "." + parts[2];

  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
  EXPECT_FALSE(VerifyJwt(jwt, otherCertificate_.get()));
  EXPECT_FALSE(VerifyJwt(tampered, certificate_.get()));
}


TEST_F(ClientCertificateCredentialTest, PemKeyFirstLoads)
{
  const std::string path =
      WriteFile("key-first.pem", KeyToPem(key_.get()) + ToPem(certificate_.get()));

  const CertificateSource source = ReadCertificateFile(path, "");
  const std::string jwt = CreateClientAssertion(source, CLIENT_ID, AUDIENCE, NOW_SECONDS);

  EXPECT_FALSE(source.pkcs12);
  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
}


TEST_F(ClientCertificateCredentialTest, PemCertificateFirstLoads)
{
  const std::string path = WriteFile("cert-first.pem", GetPem());

  const CertificateSource source = ReadCertificateFile(path, "");
  const std::string jwt = CreateClientAssertion(source, CLIENT_ID, AUDIENCE, NOW_SECONDS);

  EXPECT_FALSE(source.pkcs12);
  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
}


TEST_F(ClientCertificateCredentialTest, PemChainPicksKeyCertificate)
{
  const std::string pem =
      ToPem(otherCertificate_.get()) + KeyToPem(key_.get()) + ToPem(certificate_.get());

  const std::string jwt =
      CreateClientAssertion(MakePemSource(pem), CLIENT_ID, AUDIENCE, NOW_SECONDS);

  EXPECT_EQ(EncodeBase64Url(Digest(ToDer(certificate_.get()), EVP_sha1())), GetX5t(jwt));
}


TEST_F(ClientCertificateCredentialTest, EncryptedPemKeyLoads)
{
  const std::string path =
      WriteFile("encrypted.pem", ToPem(certificate_.get()) + KeyToPem(key_.get(), PASSWORD));

  const CertificateSource source = ReadCertificateFile(path, PASSWORD);
  const std::string jwt = CreateClientAssertion(source, CLIENT_ID, AUDIENCE, NOW_SECONDS);

  EXPECT_NE(std::string::npos, source.data.find("ENCRYPTED PRIVATE KEY"));
  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
}


TEST_F(ClientCertificateCredentialTest, TraditionalEncryptedPemLoads)
{
  const std::string pem = KeyToTraditionalPem(key_.get(), PASSWORD) + ToPem(certificate_.get());

  const std::string jwt =
      CreateClientAssertion(MakePemSource(pem, PASSWORD), CLIENT_ID, AUDIENCE, NOW_SECONDS);

  EXPECT_NE(std::string::npos, pem.find("Proc-Type: 4,ENCRYPTED"));
  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
}


TEST_F(ClientCertificateCredentialTest, PemWrongPasswordRejected)
{
  const std::string path =
      WriteFile("encrypted.pem", ToPem(certificate_.get()) + KeyToPem(key_.get(), PASSWORD));

  const std::string message = ReadFileError(path, "not-the-password");

  EXPECT_EQ(0u, message.find("AzureDicom.Credentials.CertificatePath \"" + path + "\": "))
      << message;
  EXPECT_NE(std::string::npos, message.find("the password is wrong")) << message;
  EXPECT_EQ(std::string::npos, message.find("not-the-password")) << message;
}


TEST_F(ClientCertificateCredentialTest, PemMissingPasswordRejected)
{
  const std::string pem = ToPem(certificate_.get()) + KeyToPem(key_.get(), PASSWORD);

  const std::string message = AssertionError(MakePemSource(pem));

  EXPECT_NE(std::string::npos,
            message.find("the private key is encrypted; expected its password in "
                         "AzureDicom.Credentials.CertificatePassword"))
      << message;
}


TEST_F(ClientCertificateCredentialTest, Pkcs12WithPasswordLoads)
{
  const std::string path =
      WriteFile("with-password.pfx", ToPkcs12(key_.get(), certificate_.get(), PASSWORD));

  const CertificateSource source = ReadCertificateFile(path, PASSWORD);
  const std::string jwt = CreateClientAssertion(source, CLIENT_ID, AUDIENCE, NOW_SECONDS);

  EXPECT_TRUE(source.pkcs12);
  EXPECT_EQ(PASSWORD, source.password);
  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
}


TEST_F(ClientCertificateCredentialTest, Pkcs12WithoutPasswordLoads)
{
  // Depending on the tool that wrote it, a PKCS#12 file without a password has a MAC keyed with
  // an empty password or with none.
  for (const char* password : {"", static_cast<const char*>(nullptr)})
  {
    const std::string path =
        WriteFile("no-password.pfx", ToPkcs12(key_.get(), certificate_.get(), password));

    const CertificateSource source = ReadCertificateFile(path, "");
    const std::string jwt = CreateClientAssertion(source, CLIENT_ID, AUDIENCE, NOW_SECONDS);

    EXPECT_TRUE(source.pkcs12);
    EXPECT_TRUE(VerifyJwt(jwt, certificate_.get())) << (password ? "empty" : "null");
  }
}


TEST_F(ClientCertificateCredentialTest, Pkcs12WrongPasswordRejected)
{
  const std::string path =
      WriteFile("with-password.pfx", ToPkcs12(key_.get(), certificate_.get(), PASSWORD));

  const std::string message = ReadFileError(path, "Pw+8Q~s/cret&=y");

  EXPECT_EQ(0u, message.find("AzureDicom.Credentials.CertificatePath \"" + path + "\": "))
      << message;
  EXPECT_NE(std::string::npos, message.find("the PKCS#12 password is wrong")) << message;
  EXPECT_EQ(std::string::npos, message.find("Pw+8Q~s/cret")) << message;
}


TEST_F(ClientCertificateCredentialTest, Pkcs12MissingPasswordRejected)
{
  const std::string path =
      WriteFile("with-password.pfx", ToPkcs12(key_.get(), certificate_.get(), PASSWORD));

  const std::string message = ReadFileError(path, "");

  EXPECT_NE(std::string::npos, message.find("protected by a password; expected it in "
                                            "AzureDicom.Credentials.CertificatePassword"))
      << message;
}


TEST_F(ClientCertificateCredentialTest, Pkcs12UnneededPasswordRejected)
{
  const std::string path =
      WriteFile("no-password.pfx", ToPkcs12(key_.get(), certificate_.get(), ""));

  const std::string message = ReadFileError(path, PASSWORD);

  EXPECT_NE(std::string::npos, message.find("has no password, but a password was given"))
      << message;
  EXPECT_EQ(std::string::npos, message.find(PASSWORD)) << message;
}


TEST_F(ClientCertificateCredentialTest, PemMismatchedKeyRejected)
{
  const std::string path =
      WriteFile("mismatch.pem", ToPem(certificate_.get()) + KeyToPem(otherKey_.get()));
  const std::string thumbprint = ToUpperHex(Digest(ToDer(certificate_.get()), EVP_sha1()));

  const std::string message = ReadFileError(path, "");

  EXPECT_NE(std::string::npos, message.find("the private key does not match the certificate"))
      << message;
  EXPECT_NE(std::string::npos, message.find(thumbprint)) << message;
}


TEST_F(ClientCertificateCredentialTest, Pkcs12MismatchedKeyRejected)
{
  // PKCS12_create refuses a certificate that does not match the key, so the certificate goes
  // in as a chain certificate.
  X509StackPtr chain(sk_X509_new_null());
  sk_X509_push(chain.get(), certificate_.get());
  const std::string path =
      WriteFile("mismatch.pfx", ToPkcs12(otherKey_.get(), nullptr, PASSWORD, chain.get()));

  const std::string message = ReadFileError(path, PASSWORD);

  EXPECT_NE(std::string::npos, message.find("does not match its certificate")) << message;
}


TEST_F(ClientCertificateCredentialTest, GarbageFileRejected)
{
  std::string garbage(2048, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(&garbage[0]), garbage.size());
  garbage[0] = 0x01;  // not the DER SEQUENCE tag, so that no decoder can mistake it
  const std::string path = WriteFile("garbage.bin", garbage);

  const std::string message = ReadFileError(path, "");

  EXPECT_NE(std::string::npos, message.find("is neither PEM")) << message;
  EXPECT_NE(std::string::npos, message.find(path)) << message;
}


TEST_F(ClientCertificateCredentialTest, Base64FileHinted)
{
  const std::string pkcs12 = ToPkcs12(key_.get(), certificate_.get(), "");
  const std::string path = WriteFile("base64.pfx", EncodeBase64(pkcs12));

  const std::string message = ReadFileError(path, "");

  EXPECT_NE(std::string::npos, message.find("looks like base64 text")) << message;
}


TEST_F(ClientCertificateCredentialTest, MissingFileRejected)
{
  const std::string path = directory_ + "/absent.pem";

  const std::string message = ReadFileError(path, "");

  EXPECT_EQ("AzureDicom.Credentials.CertificatePath \"" + path +
                "\": cannot be opened: No such file or directory; expected a readable PEM or "
                "PKCS#12 file",
            message);
}


TEST_F(ClientCertificateCredentialTest, EmptyFileRejected)
{
  const std::string path = WriteFile("empty.pem", "");

  const std::string message = ReadFileError(path, "");

  EXPECT_NE(std::string::npos, message.find("is empty")) << message;
}


TEST_F(ClientCertificateCredentialTest, DirectoryRejected)
{
  const std::string message = ReadFileError(directory_, "");

  EXPECT_NE(std::string::npos, message.find("is not a regular file")) << message;
}


TEST_F(ClientCertificateCredentialTest, EmptyPathRejected)
{
  const std::string message = ReadFileError("", "");

  EXPECT_EQ(0u, message.find("AzureDicom.Credentials.CertificatePath is empty")) << message;
}


TEST_F(ClientCertificateCredentialTest, CertificateWithoutKeyRejected)
{
  const std::string message = AssertionError(MakePemSource(ToPem(certificate_.get())));

  EXPECT_NE(std::string::npos, message.find("contains no PRIVATE KEY block")) << message;
}


TEST_F(ClientCertificateCredentialTest, KeyWithoutCertificateRejected)
{
  const std::string message = AssertionError(MakePemSource(KeyToPem(key_.get())));

  EXPECT_NE(std::string::npos, message.find("contains no CERTIFICATE block")) << message;
}


TEST_F(ClientCertificateCredentialTest, Pkcs12WithoutKeyRejected)
{
  CertificateSource source;
  source.data = ToPkcs12(nullptr, certificate_.get(), PASSWORD);
  source.pkcs12 = true;
  source.password = PASSWORD;

  const std::string message = AssertionError(source);

  EXPECT_NE(std::string::npos, message.find("contains no private key")) << message;
}


TEST_F(ClientCertificateCredentialTest, CorruptPemBlockRejected)
{
  const std::string pem = KeyToPem(key_.get()) +
                          "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n"
                          "-----END CERTIFICATE-----\n";

  const std::string message = AssertionError(MakePemSource(pem));

  EXPECT_NE(std::string::npos, message.find("a CERTIFICATE block cannot be decoded")) << message;
}


TEST_F(ClientCertificateCredentialTest, EcKeyRejected)
{
  KeyPtr ecKey(EVP_EC_gen("P-256"));
  ASSERT_TRUE(ecKey != nullptr);
  X509Ptr ecCertificate = MakeCertificate(ecKey.get(), "ec", -3600, YEAR_SECONDS);
  const std::string pem = ToPem(ecCertificate.get()) + KeyToPem(ecKey.get());

  const std::string message = AssertionError(MakePemSource(pem));

  EXPECT_NE(std::string::npos, message.find("the private key is of type EC; expected an RSA key"))
      << message;
}


TEST_F(ClientCertificateCredentialTest, LegacyPkcs12Rejected)
{
  // OpenSSL 3 keeps RC2-40, the cipher of older PKCS#12 exports, in its legacy provider. The
  // file is made in a library context of its own, so that the default context, which the
  // credential uses, keeps only the default provider.
  LibraryContextPtr legacyContext(OSSL_LIB_CTX_new());
  ProviderPtr legacy(OSSL_PROVIDER_load(legacyContext.get(), "legacy"));
  ProviderPtr standard(OSSL_PROVIDER_load(legacyContext.get(), "default"));
  if (!legacy || !standard)
  {
    ERR_clear_error();
    GTEST_SKIP() << "OpenSSL's legacy provider is not installed";
  }

  Pkcs12Ptr pkcs12(PKCS12_create_ex(PASSWORD, "legacy", key_.get(), certificate_.get(), nullptr,
                                    NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
                                    NID_pbe_WithSHA1And40BitRC2_CBC, 0, 0, 0, legacyContext.get(),
                                    nullptr));
  ASSERT_TRUE(pkcs12 != nullptr) << ERR_reason_error_string(ERR_get_error());
  const std::string path = WriteFile("legacy.pfx", ToDer(pkcs12.get()));

  const std::string message = ReadFileError(path, PASSWORD);

  EXPECT_NE(std::string::npos, message.find("RC2-40")) << message;
  EXPECT_NE(std::string::npos, message.find("openssl pkcs12 -legacy")) << message;
  EXPECT_EQ(std::string::npos, message.find(PASSWORD)) << message;
}


TEST_F(ClientCertificateCredentialTest, RequestSendsAssertionForm)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));

  const AccessToken token = MakeCredential()->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ("POST", requests[0].method);
  EXPECT_EQ(std::string("/") + TENANT_ID + "/oauth2/v2.0/token", requests[0].target);
  EXPECT_EQ("application/x-www-form-urlencoded", requests[0].GetHeader("content-type"));
  EXPECT_EQ("eyJ0eXAi.eyJhdWQi.c2ln", token.value);

  const auto fields = ParseFormBody(requests[0].body);
  EXPECT_EQ(5u, fields.size());
  EXPECT_EQ("client_credentials", fields.at("grant_type"));
  EXPECT_EQ(CLIENT_ID, fields.at("client_id"));
  EXPECT_EQ(SCOPE, fields.at("scope"));
  EXPECT_EQ(JWT_BEARER, fields.at("client_assertion_type"));
  EXPECT_EQ(0u, fields.count("client_secret"));
}


TEST_F(ClientCertificateCredentialTest, RequestAssertionVerifies)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  const int64_t before = NowMs() / 1000;

  MakeCredential()->RequestToken();

  const int64_t after = NowMs() / 1000;
  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  const std::string jwt = ParseFormBody(requests[0].body).at("client_assertion");
  const Json::Value claims = DecodeJwtPart(SplitJwt(jwt)[1]);

  EXPECT_TRUE(VerifyJwt(jwt, certificate_.get()));
  EXPECT_EQ(GetTokenUrl(), claims["aud"].asString());
  EXPECT_GE(claims["nbf"].asInt64(), before);
  EXPECT_LE(claims["nbf"].asInt64(), after);
  EXPECT_EQ(claims["nbf"].asInt64() + ASSERTION_LIFETIME_SECONDS, claims["exp"].asInt64());
}


TEST_F(ClientCertificateCredentialTest, ThumbprintOfLastCertificate)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  auto credential = MakeCredential();
  const std::string thumbprint = ToUpperHex(Digest(ToDer(certificate_.get()), EVP_sha1()));

  EXPECT_EQ("", credential->GetThumbprint());
  credential->RequestToken();
  EXPECT_EQ(thumbprint, credential->GetThumbprint());
  EXPECT_EQ(40u, credential->GetThumbprint().size());
}


TEST_F(ClientCertificateCredentialTest, ReadsCertificateEachRequest)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  auto credential = MakeCredential();

  credential->RequestToken();
  source_ = MakePemSource(ToPem(otherCertificate_.get()) + KeyToPem(otherKey_.get()));
  credential->RequestToken();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(2u, requests.size());
  const std::string first = ParseFormBody(requests[0].body).at("client_assertion");
  const std::string second = ParseFormBody(requests[1].body).at("client_assertion");
  EXPECT_TRUE(VerifyJwt(first, certificate_.get()));
  EXPECT_TRUE(VerifyJwt(second, otherCertificate_.get()));
  EXPECT_EQ(ToUpperHex(Digest(ToDer(otherCertificate_.get()), EVP_sha1())),
            credential->GetThumbprint());
  EXPECT_EQ(2, certificateReads_);
}


TEST_F(ClientCertificateCredentialTest, EntraErrorKeepsCode)
{
  server_.Enqueue(MakeCanned(401, UNKNOWN_CERTIFICATE_ANSWER));
  auto credential = MakeCredential();

  const Exception e = RequestTokenError(*credential);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, message.find("ClientCertificate credential: the token request to " + GetTokenUrl() +
                             " failed with HTTP 401: invalid_client: "
                             "AADSTS700027: Client assertion failed"))
      << message;
  EXPECT_NE(std::string::npos, message.find("Trace ID: 3d1e2f40")) << message;
}


TEST_F(ClientCertificateCredentialTest, EchoedSecretsRedacted)
{
  // The assertion of a request cannot be known in advance, so the redaction that
  // RequestToken relies on is checked through PostTokenRequest with two known values.
  CannedResponse echo =
      MakeCanned(400,
                 "{\"error\":\"invalid_request\",\"error_description\":\"AADSTS50027: invalid JWT "
                 "eyJhbGciOi.first-part.sig and eyJhbGciOi.second-part.sig\"}");
  server_.Enqueue(echo);

  std::string message;
  try
  {
    PostTokenRequest(GetTokenUrl(), "client_assertion=x",
                     {"eyJhbGciOi.first-part.sig", "eyJhbGciOi.second-part.sig"},
                     "ClientCertificate", TlsSettings());
  }
  catch (const Exception& e)
  {
    message = e.what();
  }

  EXPECT_EQ(std::string::npos, message.find("first-part")) << message;
  EXPECT_EQ(std::string::npos, message.find("second-part")) << message;
  EXPECT_NE(std::string::npos, message.find("invalid JWT [REDACTED] and [REDACTED]")) << message;
}


TEST_F(ClientCertificateCredentialTest, PasswordNeverInMessages)
{
  const std::string pkcs12Path =
      WriteFile("with-password.pfx", ToPkcs12(key_.get(), certificate_.get(), PASSWORD));
  const std::string pemPath =
      WriteFile("encrypted.pem", ToPem(certificate_.get()) + KeyToPem(key_.get(), PASSWORD));
  const std::string mismatchPath =
      WriteFile("mismatch.pem", ToPem(certificate_.get()) + KeyToPem(otherKey_.get(), PASSWORD));
  const std::string noPasswordPath =
      WriteFile("no-password.pfx", ToPkcs12(key_.get(), certificate_.get(), ""));

  const std::vector<std::string> messages = {
      ReadFileError(pkcs12Path, std::string(PASSWORD) + "x"),
      ReadFileError(pemPath, std::string(PASSWORD) + "x"),
      ReadFileError(mismatchPath, PASSWORD),
      ReadFileError(noPasswordPath, PASSWORD),
      ReadFileError(directory_ + "/absent.pfx", PASSWORD),
  };

  for (const std::string& message : messages)
  {
    EXPECT_FALSE(message.empty());
    EXPECT_EQ(std::string::npos, message.find(PASSWORD)) << message;
    EXPECT_EQ(std::string::npos, message.find(UrlEncode(PASSWORD))) << message;
  }
}


TEST_F(ClientCertificateCredentialTest, PasswordNotSent)
{
  source_ = MakePemSource(ToPem(certificate_.get()) + KeyToPem(key_.get(), PASSWORD), PASSWORD);
  server_.Enqueue(MakeCanned(401, UNKNOWN_CERTIFICATE_ANSWER));
  auto credential = MakeCredential();

  const std::string message = RequestTokenError(*credential).what();

  const auto requests = server_.GetRequests();
  ASSERT_EQ(1u, requests.size());
  EXPECT_EQ(std::string::npos, requests[0].body.find(UrlEncode(PASSWORD)));
  EXPECT_EQ(std::string::npos, requests[0].body.find(PASSWORD));
  EXPECT_EQ(std::string::npos, message.find(PASSWORD)) << message;
}


TEST_F(ClientCertificateCredentialTest, BadCertificateNamesClient)
{
  source_ = MakePemSource(ToPem(certificate_.get()));
  auto credential = MakeCredential();

  const Exception e = RequestTokenError(*credential);

  EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
  EXPECT_EQ(0u, std::string(e.what()).find(std::string("ClientCertificate credential: the "
                                                       "certificate of client ID ") +
                                           CLIENT_ID + ": contains no PRIVATE KEY block"))
      << e.what();
  EXPECT_EQ(0u, server_.GetRequests().size());
}


TEST_F(ClientCertificateCredentialTest, ExpiredCertificateWarnsOnce)
{
  X509Ptr expired = MakeCertificate(key_.get(), "expired", -2 * YEAR_SECONDS, -DAY_SECONDS);
  source_ = MakePemSource(ToPem(expired.get()) + KeyToPem(key_.get()));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  RecordingLogger logger;
  auto credential = MakeCredential(&logger);

  credential->RequestToken();
  credential->RequestToken();

  ASSERT_EQ(1u, logger.warnings.size());
  EXPECT_NE(std::string::npos, logger.warnings[0].find("expired on")) << logger.warnings[0];
  EXPECT_NE(std::string::npos, logger.warnings[0].find(credential->GetThumbprint()))
      << logger.warnings[0];
  EXPECT_EQ(2u, server_.GetRequests().size());
}


TEST_F(ClientCertificateCredentialTest, ExpiredCertificateInError)
{
  X509Ptr expired = MakeCertificate(key_.get(), "expired", -2 * YEAR_SECONDS, -DAY_SECONDS);
  source_ = MakePemSource(ToPem(expired.get()) + KeyToPem(key_.get()));
  server_.Enqueue(MakeCanned(401, UNKNOWN_CERTIFICATE_ANSWER));
  auto credential = MakeCredential();

  const std::string message = RequestTokenError(*credential).what();

  EXPECT_NE(std::string::npos, message.find("AADSTS700027")) << message;
  EXPECT_NE(std::string::npos, message.find("(the certificate with thumbprint " +
                                            credential->GetThumbprint() + " expired on "))
      << message;
}


TEST_F(ClientCertificateCredentialTest, ExpiringCertificateWarns)
{
  X509Ptr expiring = MakeCertificate(key_.get(), "expiring", -DAY_SECONDS, 10 * DAY_SECONDS);
  source_ = MakePemSource(ToPem(expiring.get()) + KeyToPem(key_.get()));
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  RecordingLogger logger;

  MakeCredential(&logger)->RequestToken();

  ASSERT_EQ(1u, logger.warnings.size());
  EXPECT_NE(std::string::npos, logger.warnings[0].find("expires on")) << logger.warnings[0];
}


TEST_F(ClientCertificateCredentialTest, ValidCertificateNoWarning)
{
  server_.Enqueue(MakeCanned(200, TOKEN_ANSWER));
  RecordingLogger logger;

  MakeCredential(&logger)->RequestToken();

  EXPECT_EQ(0u, logger.warnings.size());
}


TEST_F(ClientCertificateCredentialTest, TypeAndPrincipal)
{
  const auto credential = MakeCredential();

  EXPECT_EQ("ClientCertificate", credential->GetType());
  EXPECT_EQ(CLIENT_ID, credential->GetPrincipal());
}


TEST_F(ClientCertificateCredentialTest, MissingClientIdRejected)
{
  try
  {
    ClientCertificateCredential credential(
        server_.GetUrl(""), TENANT_ID, "", SCOPE, [this] { return source_; }, TlsSettings());
    FAIL() << "expected an exception";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(ErrorCode::BadConfiguration, e.GetCode());
    EXPECT_NE(std::string::npos,
              std::string(e.what()).find("ClientCertificate credential: Credentials.ClientId is "
                                         "empty"))
        << e.what();
  }
}
